package engine

import (
	"time"

	"github.com/otter-ota/otter/internal/ota"
)

// applyInput applies one input under the task's policy: a job that starts
// flight gets the policy's timeout as its deadline.
func applyInput(j ota.Job, in ota.JobInput, now time.Time, p ota.Policy) (ota.Job, bool) {
	if in.Timeout == 0 {
		in.Timeout = time.Duration(p.Timeout)
	}
	next, ch := j.Apply(in, now)
	return next, ch.Changed
}
