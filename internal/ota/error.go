package ota

import (
	"errors"
	"fmt"
	"strings"
)

// Error codes shared by every layer. The API maps each to one HTTP status in
// a single place, so a store or engine never has to know about HTTP.
const (
	EINVALID      = "invalid"      // the input is malformed or breaks a rule
	ENOTFOUND     = "not_found"    // the named thing does not exist
	ECONFLICT     = "conflict"     // the thing exists already or is in use
	EUNAUTHORIZED = "unauthorized" // no or unknown credentials
	EFORBIDDEN    = "forbidden"    // known credentials, not allowed
	ETOOLARGE     = "too_large"    // the payload exceeds a configured limit
	EMISMATCH     = "mismatch"     // content does not match what was declared (hash)
	EUNAVAILABLE  = "unavailable"  // try again later
	EINTERNAL     = "internal"     // a bug or an outage; details are logged, not shown
)

// Error is a domain error: a machine-readable code and a message written for
// the operator or device developer who will read it.
type Error struct {
	Code    string
	Message string
	// Details optionally names the offending items (for example the devices
	// that a task would double-target), so clients can act on them.
	Details []string
	// Fields names, for an EINVALID error, each input that broke a rule and
	// what is wrong with it, so a form or a client can show every problem
	// beside its own field instead of parsing the message.
	Fields []FieldError
}

// FieldError is one rule one input broke. Field is the input's path in the
// API's request body, dotted ("policy.rate", "target.devices").
type FieldError struct {
	Field   string
	Message string
}

// Invalid returns an EINVALID *Error listing every field error; its message
// joins theirs, so a client that reads only the message still reads all.
func Invalid(fields ...FieldError) *Error {
	msgs := make([]string, len(fields))
	for i, f := range fields {
		msgs[i] = f.Message
	}
	return &Error{Code: EINVALID, Message: strings.Join(msgs, "; "), Fields: fields}
}

// Error implements the error interface.
func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Plural counts n things: "1 device", "2 devices".
func Plural[N ~int | ~int64](n N, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL
// for any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the operator-facing message of err: the message of its
// *Error, or a generic text for internal errors so that no internal detail
// (SQL, paths) leaks to clients.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
