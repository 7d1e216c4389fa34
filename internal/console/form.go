package console

import (
	"errors"
	"net/url"
	"strings"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/ota"
)

// form is a submitted (or empty) form with the errors to show next to its
// fields; Error is shown next to its submit button.
type form struct {
	Values url.Values
	Errors map[string]string
	Error  string
}

func newForm(v url.Values) *form {
	if v == nil {
		v = url.Values{}
	}
	return &form{Values: v, Errors: map[string]string{}}
}

// Get returns the trimmed value of a field.
func (f *form) Get(name string) string { return strings.TrimSpace(f.Values.Get(name)) }

// Raw returns a field's value as typed.
func (f *form) Raw(name string) string { return f.Values.Get(name) }

// Checked reports whether a checkbox was ticked.
func (f *form) Checked(name string) bool {
	v := f.Values.Get(name)
	return v == "on" || v == "true" || v == "1"
}

// Err returns the error of a field, "" when it has none.
func (f *form) Err(name string) string { return f.Errors[name] }

// OK reports whether the form has no error at all.
func (f *form) OK() bool { return len(f.Errors) == 0 && f.Error == "" }

// Fail records err next to field, or next to the submit button when field
// is "" or the field already has an error.
func (f *form) Fail(field string, err error) { f.failMessage(field, messageOf(err)) }

func (f *form) failMessage(field, msg string) {
	if field == "" || f.Errors[field] != "" {
		f.Error = joinMessages(f.Error, msg)
		return
	}
	f.Errors[field] = msg
}

// FailAt records err next to the field its message names (see fieldOf),
// or next to the submit button.
func (f *form) FailAt(err error, fields []fieldHint) {
	for _, m := range messagesOf(err) {
		f.failMessage(fieldOf(m.text, m.location, fields), capitalize(m.text))
	}
}

func joinMessages(a, b string) string {
	if a == "" {
		return b
	}
	return a + " " + b
}

// fieldHint names a form field and the words that start the API's or the
// engine's messages about it, e.g. {"key", "device key"}; a prefix written
// "~words" matches those words anywhere in the message.
type fieldHint struct {
	field    string
	prefixes []string
}

func hint(field string, prefixes ...string) fieldHint { return fieldHint{field, prefixes} }

// fieldOf picks the form field an error message is about: a validation
// location ("body.key") names it exactly; otherwise the message's start
// ("tag site: ...", "rate 5 must ...") does. Hints are tried in order, so
// longer prefixes ("rate_growth") go before shorter ones ("rate").
func fieldOf(msg, location string, hints []fieldHint) string {
	if location != "" {
		name := location[strings.LastIndex(location, ".")+1:]
		for _, h := range hints {
			if h.field == name {
				return h.field
			}
		}
	}
	lower := strings.ToLower(msg)
	for _, h := range hints {
		for _, p := range h.prefixes {
			if inner, ok := strings.CutPrefix(p, "~"); ok && strings.Contains(lower, inner) || strings.HasPrefix(lower, p) {
				return h.field
			}
		}
	}
	return ""
}

// message is one error message and, for request validation, the field it
// is about.
type message struct {
	text     string
	location string
}

// messagesOf splits an error into the messages an operator reads: an API
// problem's field errors one by one, a policy's problems one by one, or
// the single message of any other error.
func messagesOf(err error) []message {
	var ce *client.Error
	if errors.As(err, &ce) && len(ce.Errors) > 0 {
		out := make([]message, len(ce.Errors))
		for i, fe := range ce.Errors {
			out[i] = message{text: fe.Message, location: fe.Location}
		}
		return out
	}
	var oe *ota.Error
	if errors.As(err, &oe) && oe.Code == ota.EINVALID && strings.HasPrefix(oe.Message, "invalid policy: ") && len(oe.Details) > 0 {
		out := make([]message, len(oe.Details))
		for i, d := range oe.Details {
			out[i] = message{text: capitalize(d)}
		}
		return out
	}
	return []message{{text: messageOf(err)}}
}

// messageOf returns the plain-words message of any error: the API's
// problem detail, a domain error's message, or "internal error" (details
// are logged, never shown).
func messageOf(err error) string {
	var ce *client.Error
	if errors.As(err, &ce) {
		msg := ce.Detail
		if msg == "" {
			msg = ce.Title
		}
		if len(ce.Details) > 0 && !strings.Contains(msg, ce.Details[0]) {
			msg += ": " + strings.Join(ce.Details[:min(len(ce.Details), 10)], ", ")
		}
		return capitalize(msg)
	}
	return capitalize(ota.ErrorMessage(err))
}

// capitalize starts a message with a capital, unless it starts with a
// field's name (abort_min), which keeps its spelling.
func capitalize(s string) string {
	first, _, _ := strings.Cut(s, " ")
	if s == "" || s[0] < 'a' || s[0] > 'z' || strings.Contains(first, "_") {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
