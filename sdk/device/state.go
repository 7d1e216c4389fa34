package device

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/otter-ota/otter/sdk/wire"
)

// phase is how far the current job has come, as kept in the state file.
type phase string

const (
	phasePending     phase = "pending"     // received; checks and confirmation to do
	phaseDownloading phase = "downloading" // accepted; the .part file grows
	phaseInstalling  phase = "installing"  // verified; the installer writes and activates
	phaseRebooting   phase = "rebooting"   // activated; the next start reports the outcome
)

// jobRecord is the current job as kept in the state file.
type jobRecord struct {
	Upgrade wire.Upgrade `json:"upgrade"`
	Phase   phase        `json:"phase"`
	From    string       `json:"from,omitempty"` // the module's version when the job began
	ETag    string       `json:"etag,omitempty"` // of the partial download, for If-Range
	Part    string       `json:"part,omitempty"` // the partial download
}

// outcome is how a job ended on this device.
type outcome string

const (
	outcomeSucceeded outcome = "succeeded"
	outcomeFailed    outcome = "failed"
	outcomeDeclined  outcome = "declined"
	outcomeCancelled outcome = "cancelled"
)

// doneRecord remembers a finished job, so that the same job delivered again
// is recognised and its last answer repeated instead of starting again.
type doneRecord struct {
	Job     string         `json:"job"`
	Attempt int            `json:"attempt,omitempty"`
	Outcome outcome        `json:"outcome"`
	Answer  *wire.Progress `json:"answer,omitempty"` // the failure report, to repeat
	Decline *wire.Confirm  `json:"decline,omitempty"`
}

// maxDone bounds the memory of finished jobs: only recent deliveries can
// be duplicates.
const maxDone = 8

// state is everything the client keeps across restarts.
type state struct {
	Format int          `json:"format"` // 1
	Job    *jobRecord   `json:"job,omitempty"`
	Done   []doneRecord `json:"done,omitempty"`
}

// finished returns the record of job and attempt if it ended here. A
// cancel that named no attempt covers every attempt of its job.
func (s *state) finished(job string, attempt int) *doneRecord {
	for i := range s.Done {
		d := &s.Done[i]
		if d.Job == job && (d.Attempt == attempt || d.Attempt == 0 && d.Outcome == outcomeCancelled) {
			return d
		}
	}
	return nil
}

// finish ends the current job with d.
func (s *state) finish(d doneRecord) {
	s.Job = nil
	s.remember(d)
}

// remember adds d to the finished jobs, forgetting the oldest.
func (s *state) remember(d doneRecord) {
	s.Done = append(s.Done, d)
	if len(s.Done) > maxDone {
		s.Done = append(s.Done[:0], s.Done[len(s.Done)-maxDone:]...)
	}
}

// loadState reads the state file at path; a missing file is an empty
// state. A corrupt file is reported, not silently dropped: it may hold an
// upgrade in the middle of its reboot.
func loadState(path string) (state, error) {
	st := state{Format: 1}
	if path == "" {
		return st, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("device: read state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return state{Format: 1}, fmt.Errorf("device: state file %s is corrupt (%v); move it away to start afresh", path, err)
	}
	return st, nil
}

// saveState writes st to path atomically (write, sync, rename), so that a
// power cut leaves either the old or the new state, never half of one.
func saveState(path string, st state) error {
	if path == "" {
		return nil
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("device: encode state: %w", err)
	}
	tmp := path + ".tmp"
	if err := writeSynced(tmp, b); err != nil {
		return fmt.Errorf("device: write state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("device: write state: %w", err)
	}
	syncDir(filepath.Dir(path))
	return nil
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syncDir makes a rename durable where the platform allows it; where it
// does not (Windows), the rename is still atomic.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
