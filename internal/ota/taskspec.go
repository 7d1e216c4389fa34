package ota

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/otter-ota/otter/sdk/wire"
)

// Bounds on what an operator types, so that one request cannot store
// megabytes.
const (
	// MaxNameLen bounds a name for people: a task's or a product's.
	MaxNameLen = 200
	// MaxTags bounds the tags of a device, and those a target selects by.
	MaxTags = 32
)

// TaskSpec is an operator's request for a task, as the API, the console
// and the CLI parse it. The engine checks it with Validate, then resolves
// its target into jobs.
type TaskSpec struct {
	Name         string
	FirmwareID   int64
	Mode         Mode
	Verification bool
	Target       Target
	Policy       Policy
}

// Validate checks every rule a task request must meet before its firmware
// and devices are looked up, and reports all problems at once: an EINVALID
// *Error (see Invalid) whose fields are the paths of the inputs in the
// API's request body ("name", "target.devices", "policy.end"). now is the
// time an end must come after.
func (s TaskSpec) Validate(now time.Time) error {
	var out []FieldError
	if msg := TextProblem("task name", s.Name, MaxNameLen); msg != "" {
		out = append(out, FieldError{"name", msg})
	}
	if s.FirmwareID <= 0 {
		out = append(out, FieldError{"firmware_id", fmt.Sprintf("firmware_id %d is not a firmware id: give the id of the firmware to install", s.FirmwareID)})
	}
	if !s.Mode.Valid() {
		out = append(out, FieldError{"mode", fmt.Sprintf("mode %s is not one of push, request", quoteInput(string(s.Mode)))})
	}
	out = append(out, s.Target.problems()...)
	if s.Verification && len(s.Target.Devices) == 0 {
		out = append(out, FieldError{"target.devices", "a verification task runs on an explicit device list"})
	}
	out = append(out, s.Policy.problems()...)
	out = append(out, endProblem(s.Policy.End, now)...)
	return invalid(out)
}

// TextProblem says why s cannot be a free-form name or description of at
// most limit bytes, or returns "". what names it in the message.
func TextProblem(what, s string, limit int) string {
	switch {
	case len(s) > limit:
		return fmt.Sprintf("%s is %d bytes long: at most %d are allowed", what, len(s), limit)
	case !utf8.ValidString(s):
		return what + " is not valid UTF-8"
	case strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }):
		return what + " contains control characters"
	}
	return ""
}

// invalid returns Invalid(fields...), or nil when there is no problem.
func invalid(fields []FieldError) error {
	if len(fields) == 0 {
		return nil
	}
	return Invalid(fields...)
}

// fieldError puts the message of err under field.
func fieldError(field string, err error) FieldError {
	return FieldError{Field: field, Message: ErrorMessage(err)}
}

// wireMessage is the message of an identifier rule broken (sdk/wire).
func wireMessage(err error) string {
	var we *wire.Error
	if errors.As(err, &we) {
		return we.Message
	}
	return err.Error()
}
