package ota

import (
	"encoding/json"
	"strconv"
)

// PhaseIndex is the position of a phase in Policy.Phases, from 0; a task
// without phases has the one phase 0. People count phases from 1, as they
// count attempts: JSON (the API, and through it the CLI) carries Number,
// and every screen and event shows it, so there is one numbering.
type PhaseIndex int

// Number is the phase's number as people count it, from 1.
func (p PhaseIndex) Number() int { return int(p) + 1 }

// MarshalJSON writes the phase's Number.
func (p PhaseIndex) MarshalJSON() ([]byte, error) {
	return strconv.AppendInt(nil, int64(p.Number()), 10), nil
}

// UnmarshalJSON reads a phase Number (1 or more).
func (p *PhaseIndex) UnmarshalJSON(b []byte) error {
	var n int
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	if n < 1 {
		return Errorf(EINVALID, "phase %d: phases are numbered from 1", n)
	}
	*p = PhaseIndex(n - 1)
	return nil
}
