package devicehttp

import (
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// maxDownloadRetryAfter bounds the Retry-After, in seconds, of a download
// refused because every download slot is taken.
const maxDownloadRetryAfter = 30

// downloadPace tells a device refused for want of a download slot when to
// come back, from how long downloads take on this server. A fixed 30 s sent
// a fleet of small files away for half a minute although the slots freed up
// within milliseconds: in a rollout to 10,000 devices of a 64 KiB file, the
// last devices spent 30 s of the 41 s waiting. The wait is now spread at
// random over 1 s to twice the mean duration of a download (the time for a
// slot to free up when all are busy, twice for the others refused
// meanwhile), within 1-30 s: small files bring refused devices back within
// a second or two, large ones keep them away for longer so that a busy
// server is not asked again and again.
type downloadPace struct {
	mean    atomic.Int64 // moving mean of a download's duration, ns; 0 before the first
	started atomic.Int64 // when the first download started, unix ns
}

// start notes that a download started at now.
func (p *downloadPace) start(now time.Time) {
	if p.started.Load() == 0 {
		p.started.CompareAndSwap(0, now.UnixNano())
	}
}

// done adds a finished download's duration to the mean (a weight of 1/16:
// it follows a change of firmware size within a few dozen downloads). Two
// downloads ending at once may lose one of the two updates; a mean can
// afford that, a lock on every download would cost more.
func (p *downloadPace) done(d time.Duration) {
	old := p.mean.Load()
	if old == 0 {
		p.mean.Store(max(int64(d), 1))
		return
	}
	p.mean.Store(max(old+(int64(d)-old)/16, 1))
}

// limit is the longest Retry-After to give at now, in seconds. Before any
// download has finished, the time since the first one started stands in
// for the mean: downloads take at least that long.
func (p *downloadPace) limit(now time.Time) int {
	mean := time.Duration(p.mean.Load())
	if mean == 0 {
		if s := p.started.Load(); s != 0 {
			mean = now.Sub(time.Unix(0, s))
		}
	}
	n := int(math.Ceil(2 * mean.Seconds()))
	return min(max(n, 1), maxDownloadRetryAfter)
}

// retryAfter is the Retry-After, in seconds, for a download refused at now.
func (p *downloadPace) retryAfter(now time.Time) int {
	return 1 + rand.IntN(p.limit(now))
}
