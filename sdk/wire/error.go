package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Error codes carried by a Reply and by *Error. The first six are the
// protocol's; unauthorized and unavailable appear only in HTTP answers,
// where MQTT refuses at connect or simply drops the connection.
const (
	CodeMalformed    = "malformed"     // the message is not valid JSON or breaks a rule
	CodeTooLarge     = "too_large"     // the message exceeds MaxMessageSize
	CodeUnknownTopic = "unknown_topic" // the topic or HTTP path is not one of the protocol's
	CodeUnknownJob   = "unknown_job"   // the job does not exist or is not this device's
	CodeNoUpgrade    = "no_upgrade"    // a request found nothing to offer
	CodeInternal     = "internal"      // the server failed; try again later
	CodeUnauthorized = "unauthorized"  // HTTP only: missing or wrong credentials
	CodeUnavailable  = "unavailable"   // HTTP only: busy (429/503), see Retry-After
	// CodeMethodNotAllowed: HTTP only, a device API path called with the
	// wrong method (405, with Allow).
	CodeMethodNotAllowed = "method_not_allowed"
)

// Error is a protocol error: what a decoder or parser found wrong with a
// device's input, or what the server answered in a Reply. Message is written
// for the human who reads the device log or the server log.
type Error struct {
	Code    string
	Message string
}

// Error returns "code: message".
func (e *Error) Error() string { return e.Code + ": " + e.Message }

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, CodeInternal
// for any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// JobNamed returns the job a device message names: its "job" field when
// the message is a JSON object of at most MaxMessageSize bytes whose "job"
// is a valid job id, and "" otherwise. An error reply about a message that
// broke a rule names the job this way, so the device knows which job's
// report was refused.
func JobNamed(payload []byte) string {
	if len(payload) > MaxMessageSize {
		return ""
	}
	var probe struct {
		Job any `json:"job"`
	}
	if json.Unmarshal(payload, &probe) != nil {
		return ""
	}
	job, ok := probe.Job.(string)
	if !ok || tokenProblem("job", job) != "" {
		return ""
	}
	return job
}

// ErrorReply turns an error met while handling a message of kind to into the
// Reply the server sends back. Errors other than *Error become internal with
// a generic message, so that server details never reach a device.
func ErrorReply(to Kind, err error) Reply {
	var e *Error
	if errors.As(err, &e) {
		return Reply{To: to, Error: e.Code, Message: e.Message}
	}
	return Reply{To: to, Error: CodeInternal, Message: "the server failed to handle the message; send it again later"}
}

// ReplyTo names, for the To field of an error Reply, the message a topic or
// HTTP path carried: its last segment when that is a printable field, and
// "unknown" otherwise (an unknown topic must not echo arbitrary bytes).
func ReplyTo(topicOrPath string) Kind {
	last := topicOrPath[strings.LastIndexByte(topicOrPath, '/')+1:]
	if last == "" || len(last) > MaxFieldLength {
		return "unknown"
	}
	for i := 0; i < len(last); i++ {
		if last[i] <= ' ' || last[i] > '~' {
			return "unknown"
		}
	}
	return Kind(last)
}
