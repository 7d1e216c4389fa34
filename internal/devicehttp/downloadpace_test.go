package devicehttp

import (
	"testing"
	"time"
)

func TestDownloadPaceFollowsHowLongDownloadsTake(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		started   time.Duration // since t0 the first download started; <0: none
		durations []time.Duration
		at        time.Duration // since t0
		want      int
	}{
		{name: "nothing served yet", started: -1, at: 0, want: 1},
		{name: "first downloads running for 0.4 s", started: 0, at: 400 * time.Millisecond, want: 1},
		{name: "first downloads running for 7 s", started: 0, at: 7 * time.Second, want: 14},
		{name: "first downloads running for an hour", started: 0, at: time.Hour, want: maxDownloadRetryAfter},
		{name: "small files", started: 0, durations: []time.Duration{3 * time.Millisecond, 5 * time.Millisecond}, at: time.Hour, want: 1},
		{name: "one 5 s download", started: 0, durations: []time.Duration{5 * time.Second}, at: time.Hour, want: 10},
		{name: "large files", started: 0, durations: []time.Duration{10 * time.Minute}, at: time.Hour, want: maxDownloadRetryAfter},
		{name: "smaller files follow larger ones", started: 0, durations: append([]time.Duration{20 * time.Second}, repeat(10*time.Millisecond, 64)...), at: time.Hour, want: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p downloadPace
			if tc.started >= 0 {
				p.start(t0.Add(tc.started))
			}
			for _, d := range tc.durations {
				p.done(d)
			}
			now := t0.Add(tc.at)
			if got := p.limit(now); got != tc.want {
				t.Fatalf("limit = %d s, want %d s", got, tc.want)
			}
			seen := map[int]bool{}
			for range 1000 {
				ra := p.retryAfter(now)
				if ra < 1 || ra > tc.want {
					t.Fatalf("Retry-After %d s, want 1-%d s", ra, tc.want)
				}
				seen[ra] = true
			}
			// Refused devices are spread over the whole range, not sent
			// back together.
			if tc.want > 1 && len(seen) < min(tc.want, 10) {
				t.Fatalf("1,000 Retry-Afters took %d values of 1-%d", len(seen), tc.want)
			}
		})
	}
}

func repeat(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}
