package console

import (
	"errors"
	"net/url"
	"slices"
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

// FailAt records each field error of an API problem next to the field of
// fields its location names (see fieldOf), and any other error, or a field
// error about no field of the form, next to the submit button.
func (f *form) FailAt(err error, fields []string) {
	var ce *client.Error
	if !errors.As(err, &ce) || len(ce.Errors) == 0 {
		f.Fail("", err)
		return
	}
	for _, fe := range ce.Errors {
		f.failMessage(fieldOf(fe.Location, fields), capitalize(fe.Message))
	}
}

func joinMessages(a, b string) string {
	if a == "" {
		return b
	}
	return a + " " + b
}

// locationFields names the form fields whose names differ from their
// path in the API's body; a problem of the target as a whole shows at
// target_all.
var locationFields = map[string]string{"firmware_id": "firmware", "target": "target_all", "target.all": "target_all"}

// fieldOf picks the form field of fields a problem's field error is about,
// by its location in the request body alone: "body.key" is the field key,
// "body.policy.rate" the field rate, "body.target.devices[2]" the field
// devices, "body.policy.window.tz" the field window. It returns "" for any
// other location.
func fieldOf(location string, fields []string) string {
	path, ok := strings.CutPrefix(location, "body.")
	if !ok {
		return ""
	}
	if i := strings.IndexByte(path, '['); i >= 0 {
		path = path[:i]
	}
	name, ok := locationFields[path]
	if !ok {
		path = strings.TrimPrefix(path, "policy.")
		path = strings.TrimPrefix(path, "target.")
		name, _, _ = strings.Cut(path, ".")
	}
	if slices.Contains(fields, name) {
		return name
	}
	return ""
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
