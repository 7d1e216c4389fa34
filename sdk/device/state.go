package device

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/otter-ota/otter/sdk/wire"
)

// phase is how far the current job has come, as kept in the state file.
type phase string

const (
	phasePending     phase = "pending"     // received; checks and confirmation to do
	phaseDownloading phase = "downloading" // accepted; the .part file grows
	phaseConfirming  phase = "confirming"  // verified; waits for the local confirmation to install
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
	// Admitted is set once the command passed the replay check, so that a
	// restart before the download does not take it for its own replay.
	Admitted bool `json:"admitted,omitempty"`
	// Began is when the download of this job first started, for the
	// overall download deadline (kept across restarts).
	Began time.Time `json:"began,omitzero"`
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
	// Floor is, per module, the highest ordered version the device has run
	// since its last signed downgrade: a command below it is refused unless
	// its signed command allows a downgrade.
	Floor map[string]string `json:"floor,omitempty"`
	// Newest is, per module, the newest command the device has admitted: a
	// command not newer is a replay and never installs again, however long
	// ago the original ran (Done remembers only the last maxDone).
	Newest map[string]commandMark `json:"newest,omitempty"`
}

// commandMark names one attempt of one job. Job ids signed by otter are
// decimal and rise with every job; after orders them as numbers (shorter
// first, then by bytes), which is a total order for any string.
type commandMark struct {
	Job     string `json:"job"`
	Attempt int    `json:"attempt"`
}

func (m commandMark) after(o commandMark) bool {
	if c := cmp.Compare(len(m.Job), len(o.Job)); c != 0 {
		return c > 0
	}
	if c := strings.Compare(m.Job, o.Job); c != 0 {
		return c > 0
	}
	return m.Attempt > o.Attempt
}

// replayed reports whether up is not newer than the newest command
// admitted for its module.
func (s *state) replayed(up wire.Upgrade) bool {
	last, ok := s.Newest[up.Module]
	return ok && !(commandMark{up.Job, up.Attempt}).after(last)
}

// admitted records up as the newest command of its module.
func (s *state) admitted(up wire.Upgrade) {
	if s.Newest == nil {
		s.Newest = map[string]commandMark{}
	}
	s.Newest[up.Module] = commandMark{up.Job, up.Attempt}
}

// raiseFloor raises the module's floor to version when it is ordered and
// higher (opaque versions have no order, so they never set a floor).
func (s *state) raiseFloor(module, version string) bool {
	if _, err := wire.ParseVersion(version); err != nil {
		return false
	}
	cur, ok := s.Floor[module]
	if ok && wire.OrderVersions(version, cur) != wire.Higher {
		return false
	}
	s.setFloor(module, version)
	return true
}

// setFloor sets the module's floor, lowering it after a signed downgrade.
func (s *state) setFloor(module, version string) {
	if _, err := wire.ParseVersion(version); err != nil {
		return
	}
	if s.Floor == nil {
		s.Floor = map[string]string{}
	}
	s.Floor[module] = version
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
