package ota

import (
	"bytes"
	"encoding/json"
)

// ConfirmMode says where devices ask for a local confirmation: before they
// download, after the verified download and before they activate the new
// image, or both.
type ConfirmMode string

// Confirmation modes. The zero value is ConfirmNone, today's default: push
// commands run without asking, and request-mode offers are confirmed before
// the download (an offer always needs a yes).
const (
	ConfirmNone     ConfirmMode = "none"
	ConfirmDownload ConfirmMode = "download"
	ConfirmInstall  ConfirmMode = "install"
	ConfirmBoth     ConfirmMode = "both"
)

// ConfirmModes lists the modes in the order a form shows them.
var ConfirmModes = []ConfirmMode{ConfirmNone, ConfirmDownload, ConfirmInstall, ConfirmBoth}

// Valid reports whether m is a known mode; "" counts as ConfirmNone.
func (m ConfirmMode) Valid() bool {
	switch m {
	case "", ConfirmNone, ConfirmDownload, ConfirmInstall, ConfirmBoth:
		return true
	}
	return false
}

// BeforeDownload reports whether devices confirm before they download.
func (m ConfirmMode) BeforeDownload() bool { return m == ConfirmDownload || m == ConfirmBoth }

// BeforeInstall reports whether devices confirm after the download, before
// they activate the image.
func (m ConfirmMode) BeforeInstall() bool { return m == ConfirmInstall || m == ConfirmBoth }

// UnmarshalJSON also reads the boolean policies stored before the modes
// existed: true meant a confirmation before the download.
func (m *ConfirmMode) UnmarshalJSON(b []byte) error {
	switch string(bytes.TrimSpace(b)) {
	case "true":
		*m = ConfirmDownload
		return nil
	case "false", "null":
		*m = ""
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return Errorf(EINVALID, "confirm must be none, download, install or both")
	}
	*m = ConfirmMode(s)
	return nil
}
