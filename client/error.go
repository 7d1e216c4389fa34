package client

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Error codes the server puts in a problem's "code" member.
const (
	CodeInvalid      = "invalid"      // malformed input or a broken rule (400)
	CodeNotFound     = "not_found"    // the named thing does not exist (404)
	CodeConflict     = "conflict"     // it exists already or is in use (409)
	CodeUnauthorized = "unauthorized" // no, unknown or revoked token (401)
	CodeForbidden    = "forbidden"    // the token's role does not allow it (403)
	CodeTooLarge     = "too_large"    // over a configured size limit (413)
	CodeMismatch     = "mismatch"     // content does not match what was declared (422)
	CodeUnavailable  = "unavailable"  // try again later (503)
	CodeInternal     = "internal"     // a server bug or outage (500)
)

// maxShownDetails bounds how many Details Error() lists; the rest are
// counted, so that a message stays one readable line.
const maxShownDetails = 10

// Error is a failed API call: the server's RFC 9457 problem details.
type Error struct {
	// Status is the HTTP status code.
	Status int `json:"status"`
	// Code is the server's machine-readable code (CodeConflict, ...); it
	// is empty for errors that did not come from otter's own rules, such as
	// request validation (422) or a proxy's answer.
	Code   string `json:"code"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	// Details names the offending items, e.g. conflicting device keys.
	Details []string `json:"details"`
	// Errors lists field-level validation errors.
	Errors []FieldError `json:"errors"`
}

// FieldError is one field-level validation error of a problem.
type FieldError struct {
	Message  string `json:"message"`
	Location string `json:"location"` // e.g. "body.key", "query.limit"
	Value    any    `json:"value,omitempty"`
}

// Error returns the server's message followed by the status and code, e.g.
// "firmware demo/default 1.1.0 exists already (id 3) (409 conflict)".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.message())
	sep := ": "
	for _, fe := range e.Errors {
		// A rule's message names its field and is the detail, or part of it.
		if strings.Contains(e.message(), fe.Message) {
			continue
		}
		b.WriteString(sep)
		sep = "; "
		if fe.Location != "" {
			b.WriteString(fe.Location + ": ")
		}
		b.WriteString(fe.Message)
	}
	// Most messages name their items already; list them only when not.
	if len(e.Details) > 0 && !namesItem(e.message(), e.Details[0]) {
		b.WriteString(": " + strings.Join(e.Details[:min(len(e.Details), maxShownDetails)], ", "))
		if n := len(e.Details) - maxShownDetails; n > 0 {
			fmt.Fprintf(&b, " and %d more", n)
		}
	}
	fmt.Fprintf(&b, " (%d %s)", e.Status, e.codeOrStatus())
	return b.String()
}

func (e *Error) message() string {
	switch {
	case e.Detail != "":
		return e.Detail
	case e.Title != "":
		return e.Title
	}
	return http.StatusText(e.Status)
}

func (e *Error) codeOrStatus() string {
	if e.Code != "" {
		return e.Code
	}
	return strings.ToLower(http.StatusText(e.Status))
}

// maxErrorBody bounds how much of an error answer is read: a problem is
// small, and a misconfigured proxy may answer with a large page.
const maxErrorBody = 64 << 10

// readError turns a failed response into an *Error. A body that is not a
// problem document (a proxy's HTML page) still gives a useful message.
func readError(resp *http.Response) *Error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &Error{}
	if json.Unmarshal(raw, e) != nil || (e.Detail == "" && e.Title == "") {
		e = &Error{Detail: plainMessage(raw)}
	}
	e.Status = resp.StatusCode
	return e
}

// plainMessage keeps the first line of a non-JSON error body, if short.
func plainMessage(raw []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(raw)), "\n")
	if len(line) > 200 || strings.HasPrefix(line, "<") {
		return ""
	}
	return line
}

// namesItem reports whether msg names item as a whole word (a device key
// "a" is not named by "already").
func namesItem(msg, item string) bool {
	for i := 0; ; {
		j := strings.Index(msg[i:], item)
		if j < 0 || item == "" {
			return false
		}
		start, end := i+j, i+j+len(item)
		if (start == 0 || !keyByte(msg[start-1])) && (end == len(msg) || !keyByte(msg[end])) {
			return true
		}
		i = start + 1
	}
}

func keyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
}
