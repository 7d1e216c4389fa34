package device

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// backoff computes retry delays with "full jitter": a random delay between
// zero and an exponentially growing ceiling. The randomness spreads a fleet
// that lost the server at the same moment, so its return is not a stampede.
type backoff struct {
	base, cap time.Duration
	rand      func() float64 // [0, 1)
}

// delay returns the wait before retry number attempt (0 for the first).
func (b backoff) delay(attempt int) time.Duration {
	ceiling := b.cap
	if attempt < 32 && b.base<<attempt < b.cap && b.base<<attempt > 0 {
		ceiling = b.base << attempt
	}
	return time.Duration(b.rand() * float64(ceiling))
}

// wait returns how long to wait after err at retry number attempt: at least
// the server's Retry-After when it gave one, plus up to a tenth more so that
// the devices it turned away do not return in the same second.
func (b backoff) wait(err error, attempt int) time.Duration {
	var ra *RetryAfterError
	if errors.As(err, &ra) && ra.After > 0 {
		return ra.After + time.Duration(b.rand()*float64(ra.After)/10)
	}
	return b.delay(attempt)
}

// RetryAfterError reports that the server is busy (HTTP 429 or 503) and
// asked the device to come back after a while.
type RetryAfterError struct {
	Status int           // the HTTP status
	After  time.Duration // from Retry-After; 0 when the server gave none
}

// Error describes the refusal.
func (e *RetryAfterError) Error() string {
	if e.After == 0 {
		return fmt.Sprintf("server busy (HTTP %d)", e.Status)
	}
	return fmt.Sprintf("server busy (HTTP %d), retry after %s", e.Status, e.After)
}

// retryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
