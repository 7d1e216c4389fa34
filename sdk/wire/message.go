package wire

import (
	"encoding/json"
	"fmt"
)

// State is the stage of an upgrade a device reports in a Progress message.
type State string

// Progress states, in the order a successful upgrade passes through them.
// The server learns success from the Inform the device sends after its
// reboot, not from a state.
const (
	StateDownloading State = "downloading"
	StateDownloaded  State = "downloaded"
	StateInstalling  State = "installing"
	StateRebooting   State = "rebooting"
	StateFailed      State = "failed"
)

// States lists every progress state in order.
var States = []State{StateDownloading, StateDownloaded, StateInstalling, StateRebooting, StateFailed}

// Valid reports whether s is a known progress state.
func (s State) Valid() bool {
	switch s {
	case StateDownloading, StateDownloaded, StateInstalling, StateRebooting, StateFailed:
		return true
	}
	return false
}

// Failure codes a device reports with StateFailed. A device may send other
// codes of lowercase letters, digits and '_'; the server keeps them as given.
const (
	FailDownload         = "download_failed"   // the file could not be downloaded
	FailVerify           = "verify_failed"     // the size or SHA-256 of the file does not match
	FailSignature        = "signature_invalid" // the manifest signature does not verify
	FailInstall          = "install_failed"    // writing or activating the image failed
	FailRolledBack       = "rolled_back"       // the device came back on its old version
	FailDowngradeRefused = "downgrade_refused" // the version is lower and allow_downgrade is false
	FailReplayRefused    = "replay_refused"    // the signed command is not newer than one the device already took
)

// FailureCodes lists the failure codes the protocol defines.
var FailureCodes = []string{FailDownload, FailVerify, FailSignature, FailInstall, FailRolledBack, FailDowngradeRefused, FailReplayRefused}

// Mode says how an upgrade reached the device: pushed by a task, or offered
// in answer to the device's request.
type Mode string

// Upgrade modes.
const (
	ModePush    Mode = "push"
	ModeRequest Mode = "request"
)

// Message is any protocol message; its kind names the topic it travels on.
type Message interface {
	Kind() Kind
	// Validate reports, as a *Error, the first rule the message breaks.
	Validate() error
}

// Inform reports the version of every module the device runs. A device
// sends it at every connect and after every reboot.
type Inform struct {
	Modules map[string]string `json:"modules"` // module -> version
}

// Request asks the server whether an upgrade of Module is available.
type Request struct {
	Module string `json:"module"`
	// Version is the version of Module the device runs; optional, the
	// server otherwise uses the last Inform.
	Version string `json:"version,omitempty"`
}

// Stage says which confirmation a Confirm message answers.
type Stage string

// Confirmation stages. An empty stage means StageDownload.
const (
	StageDownload Stage = "download" // before the download (Upgrade.Confirm, request mode)
	StageInstall  Stage = "install"  // after the verified download, before activation (Upgrade.ConfirmInstall)
)

// Confirm accepts or declines an upgrade that asked for confirmation
// (Upgrade.Confirm or Upgrade.ConfirmInstall) or was offered in request
// mode.
type Confirm struct {
	Job     string `json:"job"`
	Attempt int    `json:"attempt,omitempty"` // echoes Upgrade.Attempt
	Stage   Stage  `json:"stage,omitempty"`   // "" means StageDownload
	Accept  bool   `json:"accept"`
	Message string `json:"message,omitempty"` // why, when declined
}

// Presence says whether the device is online. A device sets
// Presence{Online: false} as its MQTT last will, and on a clean stop
// disconnects with MQTT 5 reason 0x04 so that the broker publishes it
// then too.
type Presence struct {
	Online bool `json:"online"`
}

// OfflinePresence is the payload of a device's last will.
func OfflinePresence() []byte { return Encode(Presence{Online: false}) }

// Progress reports how far the device has come with a job.
type Progress struct {
	Job     string `json:"job"`
	Attempt int    `json:"attempt,omitempty"` // echoes Upgrade.Attempt
	State   State  `json:"state"`
	Percent int    `json:"percent,omitempty"` // 0-100, with StateDownloading
	Code    string `json:"code,omitempty"`    // with StateFailed: a failure code
	Message string `json:"message,omitempty"` // with StateFailed: details for the operator
}

// Upgrade is the server's upgrade command (push mode), its offer (request
// mode) or, with Cancel, the withdrawal of an upgrade the device has not
// started installing; a cancel carries only Job (and Attempt).
type Upgrade struct {
	Job string `json:"job"`
	// Attempt counts the tries of one job, from 1. A job the server retries
	// after a failure comes again with the same Job and a higher Attempt; the
	// same Job and Attempt again is a duplicate delivery. 0 means unknown.
	Attempt   int    `json:"attempt,omitempty"`
	Cancel    bool   `json:"cancel,omitempty"`
	Module    string `json:"module"`
	Version   string `json:"version"`
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"`    // lowercase hex
	Signature string `json:"signature"` // base64 ed25519 over Manifest.SignedBytes
	URL       string `json:"url"`       // short-lived download URL
	// Confirm asks the device to confirm (Confirm message) before it
	// downloads; offers in request mode always need a confirmation.
	Confirm bool `json:"confirm"`
	// ConfirmInstall asks the device to confirm locally (Confirm message
	// with Stage StageInstall) after the file is downloaded and verified,
	// before it activates the new image.
	ConfirmInstall bool              `json:"confirm_install"`
	Mode           Mode              `json:"mode"`
	Params         map[string]string `json:"params,omitempty"` // free-form, from the firmware
	AllowDowngrade bool              `json:"allow_downgrade"`
	// CommandSignature is the base64 ed25519 signature over
	// Command.SignedBytes: it binds every field above to the device.
	CommandSignature string `json:"command_signature,omitempty"`
}

// Reply answers a message without an upgrade: a request that found nothing
// (CodeNoUpgrade) or an uplink message the server could not take.
type Reply struct {
	To      Kind   `json:"to"`               // the kind of message answered
	Job     string `json:"job,omitempty"`    // the job the answered message named
	Module  string `json:"module,omitempty"` // the module a request named
	Error   string `json:"error"`            // one of the Code constants
	Message string `json:"message,omitempty"`
	// RetryAfter, in seconds, is how long the device should wait before it
	// asks again; 0 means the device's own schedule.
	RetryAfter int `json:"retry_after,omitempty"`
}

// Kind returns KindInform.
func (Inform) Kind() Kind { return KindInform }

// Kind returns KindRequest.
func (Request) Kind() Kind { return KindRequest }

// Kind returns KindConfirm.
func (Confirm) Kind() Kind { return KindConfirm }

// Kind returns KindProgress.
func (Progress) Kind() Kind { return KindProgress }

// Kind returns KindPresence.
func (Presence) Kind() Kind { return KindPresence }

// Kind returns KindUpgrade.
func (Upgrade) Kind() Kind { return KindUpgrade }

// Kind returns KindReply.
func (Reply) Kind() Kind { return KindReply }

// CancelUpgrade returns the message that withdraws job.
func CancelUpgrade(job string, attempt int) Upgrade {
	return Upgrade{Job: job, Attempt: attempt, Cancel: true}
}

// Manifest returns what the signature of u covers for a device of product.
func (u Upgrade) Manifest(product string) Manifest {
	return Manifest{Product: product, Module: u.Module, Version: u.Version, Size: u.Size, SHA256: u.SHA256}
}

// Command returns what the command signature of u covers for device of
// product.
func (u Upgrade) Command(product, device string) Command {
	return Command{
		Product: product, Device: device, Job: u.Job, Attempt: u.Attempt,
		Module: u.Module, Version: u.Version, Size: u.Size, SHA256: u.SHA256,
		Mode: u.Mode, Confirm: u.Confirm, ConfirmInstall: u.ConfirmInstall,
		AllowDowngrade: u.AllowDowngrade, Params: u.Params,
	}
}

// MarshalJSON writes a cancel as {"job":..,"cancel":true} alone, and any
// other upgrade with all its fields.
func (u Upgrade) MarshalJSON() ([]byte, error) {
	if u.Cancel {
		return json.Marshal(struct {
			Job     string `json:"job"`
			Attempt int    `json:"attempt,omitempty"`
			Cancel  bool   `json:"cancel"`
		}{u.Job, u.Attempt, true})
	}
	type plain Upgrade // drops the method, so no recursion
	return json.Marshal(plain(u))
}

// Encode returns the JSON of m. It does not validate m: a server test may
// want to send a broken message on purpose.
func Encode(m Message) []byte {
	if p, ok := m.(Progress); ok {
		return encodeProgress(p)
	}
	b, err := json.Marshal(m)
	if err != nil { // strings, numbers, bools and string maps always encode
		panic(fmt.Sprintf("wire: encode %s: %v", m.Kind(), err))
	}
	return b
}
