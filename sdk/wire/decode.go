package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
)

// Limits on messages. A decoder refuses larger input with CodeTooLarge
// before it parses anything.
const (
	MaxMessageSize  = 16 << 10 // bytes of one uplink message
	MaxDownlinkSize = 64 << 10 // bytes of one downlink message (params can be long)
	MaxModules      = 64       // modules in one Inform
	MaxFieldLength  = 64       // bytes of a job id or failure code
	MaxVersionLen   = 128      // bytes of a version (the server's limit too)
	MaxTextLength   = 1024     // bytes of a free-text message
	MaxURLLength    = 4096     // bytes of a download URL (signed URLs are long)
)

// DecodeInform parses and checks an inform message.
func DecodeInform(b []byte) (Inform, error) { return decode[Inform](b, MaxMessageSize) }

// DecodeRequest parses and checks a request message.
func DecodeRequest(b []byte) (Request, error) { return decode[Request](b, MaxMessageSize) }

// DecodeConfirm parses and checks a confirm message; "accept" must be
// present, since a missing answer is not a "no".
func DecodeConfirm(b []byte) (Confirm, error) {
	m, err := decode[Confirm](b, MaxMessageSize)
	if err != nil {
		return Confirm{}, err
	}
	var probe struct {
		Accept *bool `json:"accept"`
	}
	if err := json.Unmarshal(b, &probe); err != nil || probe.Accept == nil {
		return Confirm{}, errorf(CodeMalformed, `confirm: field "accept" is required (true or false)`)
	}
	return m, nil
}

// DecodePresence parses and checks a presence message; "online" must be
// present.
func DecodePresence(b []byte) (Presence, error) {
	m, err := decode[Presence](b, MaxMessageSize)
	if err != nil {
		return Presence{}, err
	}
	var probe struct {
		Online *bool `json:"online"`
	}
	if err := json.Unmarshal(b, &probe); err != nil || probe.Online == nil {
		return Presence{}, errorf(CodeMalformed, `presence: field "online" is required (true or false)`)
	}
	return m, nil
}

// Validate accepts every presence message: its one field is a boolean.
func (Presence) Validate() error { return nil }

// DecodeProgress parses and checks a progress message.
func DecodeProgress(b []byte) (Progress, error) {
	if len(b) <= MaxMessageSize {
		if m, ok := parseProgress(b); ok {
			if err := m.Validate(); err != nil {
				return Progress{}, err
			}
			return m, nil
		}
	}
	return decode[Progress](b, MaxMessageSize)
}

// DecodeUpgrade parses and checks an upgrade message (command, offer or
// cancel).
func DecodeUpgrade(b []byte) (Upgrade, error) {
	m, err := decode[Upgrade](b, MaxDownlinkSize)
	if len(m.Params) == 0 {
		m.Params = nil // "params":{} and no params mean the same
	}
	return m, err
}

// DecodeReply parses and checks a reply message.
func DecodeReply(b []byte) (Reply, error) { return decode[Reply](b, MaxDownlinkSize) }

// Decode parses and checks a message of kind k, for a server or device that
// dispatches on the topic.
func Decode(k Kind, b []byte) (Message, error) {
	switch k {
	case KindInform:
		return wrap(DecodeInform(b))
	case KindRequest:
		return wrap(DecodeRequest(b))
	case KindConfirm:
		return wrap(DecodeConfirm(b))
	case KindProgress:
		return wrap(DecodeProgress(b))
	case KindPresence:
		return wrap(DecodePresence(b))
	case KindUpgrade:
		return wrap(DecodeUpgrade(b))
	case KindReply:
		return wrap(DecodeReply(b))
	}
	return nil, errorf(CodeUnknownTopic, "unknown message kind %q", Clip(string(k), maxQuoted))
}

func wrap[M Message](m M, err error) (Message, error) {
	if err != nil {
		return nil, err
	}
	return m, nil
}

// decode unmarshals b into an M and validates it. Unknown fields are
// ignored so that a newer peer can add fields.
func decode[M Message](b []byte, limit int) (M, error) {
	var m M
	kind := m.Kind()
	if len(b) > limit {
		return m, errorf(CodeTooLarge, "%s message is %d bytes; the limit is %d", kind, len(b), limit)
	}
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return m, errorf(CodeMalformed, "%s message must be a JSON object", kind)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, errorf(CodeMalformed, "%s message: %s", kind, jsonProblem(err, reflect.TypeFor[M]()))
	}
	if err := m.Validate(); err != nil {
		var z M
		return z, err
	}
	return m, nil
}

// jsonProblem rewrites a decoding error of a message of type t for a device
// developer: which field has which wrong type, or where the syntax breaks.
func jsonProblem(err error, t reflect.Type) string {
	var typ *json.UnmarshalTypeError
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &typ) && typ.Field != "" && isMapField(t, typ.Field):
		// encoding/json names the map, not the key: {"modules":{"default":1}}
		// is about the values of "modules".
		return fmt.Sprintf("the values of field %q must be %s, not a JSON %s", typ.Field, goTypeName(typ.Type.Kind().String()), typ.Value)
	case errors.As(err, &typ) && typ.Field != "":
		return fmt.Sprintf("field %q must be %s, not a JSON %s", typ.Field, goTypeName(typ.Type.Kind().String()), typ.Value)
	case errors.As(err, &syn):
		return fmt.Sprintf("not valid JSON at byte %d: %v", syn.Offset, syn)
	}
	return "not valid JSON: " + err.Error()
}

func goTypeName(k string) string {
	switch k {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "int", "int64":
		return "an integer"
	case "map", "struct":
		return "an object"
	}
	return "a " + k
}

// Validate checks an Inform: at least one module, each with a valid name
// and version.
func (m Inform) Validate() error {
	if len(m.Modules) == 0 {
		return errorf(CodeMalformed, `inform: field "modules" is required: an object of module name to version, e.g. {"default":"1.0.0"}`)
	}
	if len(m.Modules) > MaxModules {
		return errorf(CodeMalformed, "inform: %d modules; the limit is %d", len(m.Modules), MaxModules)
	}
	for mod, ver := range m.Modules {
		if p := keyProblem("module", mod); p != "" {
			return errorf(CodeMalformed, "inform: %s", p)
		}
		if p := versionProblem("version of module "+mod, ver); p != "" {
			return errorf(CodeMalformed, "inform: %s", p)
		}
	}
	return nil
}

// Validate checks a Request.
func (m Request) Validate() error {
	if p := keyProblem("module", m.Module); p != "" {
		return errorf(CodeMalformed, `request: field "module": %s`, p)
	}
	if m.Version != "" {
		if p := versionProblem("version", m.Version); p != "" {
			return errorf(CodeMalformed, "request: %s", p)
		}
	}
	return nil
}

// Validate checks a Confirm's job, attempt and message.
func (m Confirm) Validate() error {
	if err := checkJob(KindConfirm, m.Job, m.Attempt); err != nil {
		return err
	}
	if m.Stage != "" && m.Stage != StageDownload && m.Stage != StageInstall {
		return errorf(CodeMalformed, `confirm: field "stage" is %q; want download or install`, Clip(string(m.Stage), maxQuoted))
	}
	return checkText(KindConfirm, m.Message)
}

// Validate checks a Progress: a known state, a percent within 0-100 and,
// for StateFailed, a failure code.
func (m Progress) Validate() error {
	if err := checkJob(KindProgress, m.Job, m.Attempt); err != nil {
		return err
	}
	if !m.State.Valid() {
		return errorf(CodeMalformed, `progress: field "state" is %q; want downloading, downloaded, installing, rebooting or failed`, Clip(string(m.State), maxQuoted))
	}
	if m.Percent < 0 || m.Percent > 100 {
		return errorf(CodeMalformed, `progress: field "percent" is %d; want 0 to 100`, m.Percent)
	}
	if m.State == StateFailed {
		if p := codeProblem(m.Code); p != "" {
			return errorf(CodeMalformed, "progress: state failed needs a failure code: %s", p)
		}
	}
	return checkText(KindProgress, m.Message)
}

// Validate checks an Upgrade: a cancel needs only its job; a command or
// offer needs every field the device must trust, well formed.
func (m Upgrade) Validate() error {
	if err := checkJob(KindUpgrade, m.Job, m.Attempt); err != nil || m.Cancel {
		return err
	}
	if p := keyProblem("module", m.Module); p != "" {
		return errorf(CodeMalformed, `upgrade: field "module": %s`, p)
	}
	if p := versionProblem("version", m.Version); p != "" {
		return errorf(CodeMalformed, "upgrade: %s", p)
	}
	if m.Size <= 0 {
		return errorf(CodeMalformed, `upgrade: field "size" is %d; want the file size in bytes`, m.Size)
	}
	if !isSHA256Hex(m.SHA256) {
		return errorf(CodeMalformed, `upgrade: field "sha256" must be 64 lowercase hex digits`)
	}
	if !isSignature(m.Signature) {
		return errorf(CodeMalformed, `upgrade: field "signature" must be a 64-byte ed25519 signature in standard base64`)
	}
	if m.CommandSignature != "" && !isSignature(m.CommandSignature) {
		return errorf(CodeMalformed, `upgrade: field "command_signature" must be a 64-byte ed25519 signature in standard base64`)
	}
	if p := urlProblem(m.URL); p != "" {
		return errorf(CodeMalformed, `upgrade: field "url": %s`, p)
	}
	if m.Mode != ModePush && m.Mode != ModeRequest {
		return errorf(CodeMalformed, `upgrade: field "mode" is %q; want push or request`, Clip(string(m.Mode), maxQuoted))
	}
	return nil
}

// Validate checks a Reply: whom it answers and an error code.
func (m Reply) Validate() error {
	// "to" is not checked against the known kinds: a reply may answer a
	// message sent on an unknown topic.
	if p := tokenProblem("to", string(m.To)); p != "" {
		return errorf(CodeMalformed, `reply: field "to": %s`, p)
	}
	if p := codeProblem(m.Error); p != "" {
		return errorf(CodeMalformed, `reply: field "error": %s`, p)
	}
	if m.RetryAfter < 0 {
		return errorf(CodeMalformed, `reply: field "retry_after" is %d; want seconds, 0 or more`, m.RetryAfter)
	}
	return nil
}

func checkJob(k Kind, job string, attempt int) error {
	if p := tokenProblem("job", job); p != "" {
		return errorf(CodeMalformed, `%s: field "job": %s`, k, p)
	}
	if attempt < 0 {
		return errorf(CodeMalformed, `%s: field "attempt" is %d; want 1 or more`, k, attempt)
	}
	return nil
}

func checkText(k Kind, s string) error {
	if len(s) > MaxTextLength {
		return errorf(CodeMalformed, `%s: field "message" is %d bytes; the limit is %d`, k, len(s), MaxTextLength)
	}
	return nil
}

// tokenProblem checks a job id: 1 to MaxFieldLength printable
// ASCII characters without spaces.
func tokenProblem(what, s string) string {
	if s == "" {
		return what + " is empty"
	}
	if len(s) > MaxFieldLength {
		return fmt.Sprintf("%s is %d bytes long; the limit is %d", what, len(s), MaxFieldLength)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return fmt.Sprintf("%s %q contains a space, control or non-ASCII character", what, Clip(s, maxQuoted))
		}
	}
	return ""
}

// codeProblem checks an error or failure code: lowercase letters, digits
// and '_'.
func codeProblem(s string) string {
	if s == "" {
		return "code is empty"
	}
	if len(s) > MaxFieldLength {
		return fmt.Sprintf("code is %d bytes long; the limit is %d", len(s), MaxFieldLength)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Sprintf("code %q may contain only lowercase letters, digits and '_'", Clip(s, maxQuoted))
		}
	}
	return ""
}

func isSignature(s string) bool {
	sig, err := base64.StdEncoding.DecodeString(s)
	return err == nil && len(sig) == 64
}

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func urlProblem(s string) string {
	if s == "" {
		return "empty"
	}
	if len(s) > MaxURLLength {
		return fmt.Sprintf("%d bytes long; the limit is %d", len(s), MaxURLLength)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Sprintf("%q is not an absolute http or https URL", Clip(s, maxQuoted))
	}
	return ""
}

// isMapField reports whether the field at path ("a.b", by JSON names) of
// struct type t is a map.
func isMapField(t reflect.Type, path string) bool {
	for name := range strings.SplitSeq(path, ".") {
		if t.Kind() != reflect.Struct {
			return false
		}
		found := false
		for i := range t.NumField() {
			f := t.Field(i)
			if tag, _, _ := strings.Cut(f.Tag.Get("json"), ","); tag == name || tag == "" && f.Name == name {
				t, found = f.Type, true
				break
			}
		}
		if !found {
			return false
		}
	}
	return t.Kind() == reflect.Map
}
