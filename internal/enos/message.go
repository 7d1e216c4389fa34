package enos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/otter-ota/otter/sdk/wire"
)

// Kind is what a device topic under /sys/{productKey}/{deviceKey}/ carries,
// named by its last levels.
type Kind string

// The OTA topics otter handles. Anything else in a device's tree is
// KindOther.
const (
	KindInform       Kind = "ota/device/inform"
	KindProgress     Kind = "ota/device/progress"
	KindGetVersion   Kind = "ota/device/getversion"
	KindRequest      Kind = "ota/device/request"
	KindUpgrade      Kind = "ota/device/upgrade" // downlink
	KindUpgradeReply Kind = "ota/device/upgrade_reply"
	KindOther        Kind = ""
)

// Response codes of EnOS's envelope that otter answers with.
const (
	CodeSuccess      = 200
	CodeParamError   = 460 // a message otter cannot read
	CodeServerError  = 400 // EnOS calls 400 "server internal error"
	CodeNotSupported = 1101
)

// Tree returns the prefix of every topic of one device: "/sys/{p}/{d}/".
func Tree(product, device string) string { return "/sys/" + product + "/" + device + "/" }

// Topic returns the topic of kind k of one device.
func Topic(product, device string, k Kind) string { return Tree(product, device) + string(k) }

// ReplyTopic returns the topic a message on topic is answered on.
func ReplyTopic(topic string) string { return topic + "_reply" }

// ParseTopic splits a device topic "/sys/{p}/{d}/{rest}" into its product,
// device and kind; rest that is not an OTA topic otter handles gives
// KindOther.
func ParseTopic(topic string) (product, device string, k Kind, err error) {
	rest, ok := strings.CutPrefix(topic, "/sys/")
	parts := strings.SplitN(rest, "/", 3)
	if !ok || len(parts) < 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", KindOther, fmt.Errorf("topic %q is not /sys/{productKey}/{deviceKey}/{topic}", wire.Clip(topic, 100))
	}
	switch k := Kind(parts[2]); k {
	case KindInform, KindProgress, KindGetVersion, KindRequest, KindUpgrade, KindUpgradeReply:
		return parts[0], parts[1], k, nil
	}
	return parts[0], parts[1], KindOther, nil
}

// Request is a device's request: EnOS's envelope {"id","version","method",
// "params"}. The id is kept as sent (a string or a number) to be echoed;
// the method is not used (EnOS's SDKs disagree on it: otter routes by
// topic).
type Request struct {
	ID     json.RawMessage
	Method string
	Params json.RawMessage
}

// MaxMessage bounds a device message (EnOS allows 512 KB; OTA messages are
// a few hundred bytes).
const MaxMessage = 16 << 10

// DecodeRequest reads a device's request. On error the returned request
// still carries the id when it could be read, for the error reply.
func DecodeRequest(payload []byte) (Request, error) {
	var r Request
	if len(payload) > MaxMessage {
		return r, fmt.Errorf("message of %d bytes, at most %d", len(payload), MaxMessage)
	}
	var env struct {
		ID     json.RawMessage `json:"id"`
		Method json.RawMessage `json:"method"`
		Params json.RawMessage `json:"params"`
	}
	if err := json.Unmarshal(payload, &env); err != nil {
		return r, fmt.Errorf("not a JSON object: %w", err)
	}
	if id := bytes.TrimSpace(env.ID); len(id) > 0 && (id[0] == '"' || id[0] == '-' || id[0] >= '0' && id[0] <= '9') && len(id) <= 130 {
		r.ID = id
	}
	_ = json.Unmarshal(env.Method, &r.Method) // routed by topic: any method, or none
	r.Params = env.Params
	return r, nil
}

// DecodeInform returns the version of an inform's params {"version": V};
// V may be a string or (EnOS's Python sample) a JSON number, taken as
// written.
func DecodeInform(params json.RawMessage) (string, error) {
	var p struct {
		Version json.RawMessage `json:"version"`
	}
	if err := unmarshalParams(params, &p); err != nil {
		return "", err
	}
	v, err := stringOrNumber(p.Version)
	if err != nil || v == "" {
		return "", fmt.Errorf("params.version must be a non-empty string or number")
	}
	// The version rule holds for every protocol (protocol.md, section 1).
	if r := wire.VersionReason(v); r != "" {
		return "", fmt.Errorf("params.version %s is not valid: %s; use %s", strconv.Quote(wire.Clip(v, 40)), r, wire.VersionRule)
	}
	return v, nil
}

// Progress is a device's progress report: step 0..100 is a percent, a
// negative step a failure (see Step).
type Progress struct {
	Step int
	Desc string
}

// DecodeProgress reads a progress's params {"step": S, "desc": D}; S may be
// a string ("35", as EnOS's SDKs send it) or a number.
func DecodeProgress(params json.RawMessage) (Progress, error) {
	var p struct {
		Step json.RawMessage `json:"step"`
		Desc json.RawMessage `json:"desc"`
	}
	if err := unmarshalParams(params, &p); err != nil {
		return Progress{}, err
	}
	s, err := stringOrNumber(p.Step)
	if err != nil || s == "" {
		return Progress{}, fmt.Errorf("params.step must be an integer, as a string or a number")
	}
	step, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || step > 100 || step < -1_000_000 {
		return Progress{}, fmt.Errorf("params.step %q is not an integer from -1000000 to 100", wire.Clip(s, 20))
	}
	desc, _ := stringOrNumber(p.Desc) // free text; anything else is dropped
	return Progress{Step: step, Desc: desc}, nil
}

func unmarshalParams(params json.RawMessage, v any) error {
	if len(bytes.TrimSpace(params)) == 0 {
		return fmt.Errorf("the message has no params")
	}
	if err := json.Unmarshal(params, v); err != nil {
		return fmt.Errorf("params is not an object: %w", err)
	}
	return nil
}

// stringOrNumber returns a JSON string's value or a number's text; "" for
// null or absent.
func stringOrNumber(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return "", err
	}
	return n.String(), nil
}

// StepKind is what a progress step means for otter's job.
type StepKind int

// Step kinds.
const (
	StepPercent  StepKind = iota // 0..99: downloading, that far
	StepDone                     // 100: the device finished; the version it reports next decides
	StepFailed                   // a failure, with an otter failure code
	StepDeclined                 // -5: the device ignored (declined) the upgrade
)

// Outcome is a progress step mapped onto otter's job.
type Outcome struct {
	Kind    StepKind
	Percent int
	Code    string
	Message string
}

// Failure codes of EnOS's steps -1 to -4 in otter's words; a step below
// -5 is device-defined.
const (
	CodeUpgradeFailed  = "upgrade_failed"
	CodeDownloadFailed = "download_failed"
	CodeVerifyFailed   = "verify_failed"
	CodeInstallFailed  = "install_failed"
	CodeDeviceDefined  = "device_defined"
)

// maxDesc bounds the desc kept as a job's message (otter's limit).
const maxDesc = 1024

// Step maps a progress report onto otter's job: 0..99 is the download's
// percent, 100 the end of the device's upgrade, -1..-4 EnOS's failures
// (upgrade, download, verification, burning), -5 a decline, and a lower
// step a device-defined failure whose desc is kept.
func Step(p Progress) Outcome {
	desc := clipText(p.Desc)
	switch {
	case p.Step >= 0 && p.Step < 100:
		return Outcome{Kind: StepPercent, Percent: p.Step}
	case p.Step == 100:
		return Outcome{Kind: StepDone, Percent: 100}
	case p.Step == -5:
		return Outcome{Kind: StepDeclined, Message: desc}
	case p.Step < -5:
		msg := fmt.Sprintf("EnOS step %d", p.Step)
		if desc != "" {
			msg += ": " + desc
		}
		return Outcome{Kind: StepFailed, Code: CodeDeviceDefined, Message: clipText(msg)}
	}
	code := map[int]string{-1: CodeUpgradeFailed, -2: CodeDownloadFailed, -3: CodeVerifyFailed, -4: CodeInstallFailed}[p.Step]
	return Outcome{Kind: StepFailed, Code: code, Message: desc}
}

// clipText keeps at most maxDesc bytes of valid UTF-8 without control
// characters.
func clipText(s string) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	for len(s) > maxDesc {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// Firmware is one firmware a device may take, in EnOS's field names: the
// upgrade command's params and an entry of getversion's answer.
type Firmware struct {
	Version    string `json:"version"`
	Sign       string `json:"sign"`
	SignMethod string `json:"signMethod"`
	FileURL    string `json:"fileUrl"`
	FileSize   int64  `json:"fileSize"`
}

// Reply encodes the answer to a device's request: {"id","code","data",
// "message"}. data nil is sent as {}.
func Reply(id json.RawMessage, code int, data any, message string) []byte {
	if data == nil {
		data = struct{}{}
	}
	out := struct {
		ID      json.RawMessage `json:"id,omitempty"`
		Code    int             `json:"code"`
		Data    any             `json:"data"`
		Message string          `json:"message,omitempty"`
	}{id, code, data, message}
	b, _ := json.Marshal(out)
	return b
}

// UpgradeMethod is the method of the upgrade command.
const UpgradeMethod = "ota.device.upgrade"

// Upgrade encodes the upgrade command for firmware f; id identifies the
// command (otter's job), echoed in the device's upgrade_reply.
func Upgrade(id string, f Firmware) []byte {
	out := struct {
		ID      string   `json:"id"`
		Version string   `json:"version"`
		Method  string   `json:"method"`
		Params  Firmware `json:"params"`
	}{id, "1.0", UpgradeMethod, f}
	b, _ := json.Marshal(out)
	return b
}

// UpgradeReply is a device's answer to an upgrade command: {"id","code",...}.
type UpgradeReply struct {
	ID      string
	Code    int
	Message string
}

// DecodeUpgradeReply reads an upgrade_reply; a missing code reads as 0.
func DecodeUpgradeReply(payload []byte) (UpgradeReply, error) {
	var env struct {
		ID      json.RawMessage `json:"id"`
		Code    json.RawMessage `json:"code"`
		Message json.RawMessage `json:"message"`
	}
	if len(payload) > MaxMessage {
		return UpgradeReply{}, fmt.Errorf("message of %d bytes, at most %d", len(payload), MaxMessage)
	}
	if err := json.Unmarshal(payload, &env); err != nil {
		return UpgradeReply{}, fmt.Errorf("not a JSON object: %w", err)
	}
	var r UpgradeReply
	r.ID, _ = stringOrNumber(env.ID)
	code, _ := stringOrNumber(env.Code)
	r.Code, _ = strconv.Atoi(code)
	r.Message, _ = stringOrNumber(env.Message)
	r.Message = clipText(r.Message)
	return r, nil
}
