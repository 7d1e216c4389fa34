package api

import (
	"errors"
	"strconv"
	"strings"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/sdk/wire"
)

// Limits on free-form input, so that one request cannot store megabytes.
// Keys, versions, tags and params follow the rules of sdk/wire (ident.go),
// which the device side checks too.
const (
	maxTags          = ota.MaxTags
	maxParams        = 64
	maxNameLen       = ota.MaxNameLen
	maxDescription   = 4000
	maxQuotedBadText = 64
)

// quote quotes s for an error message, shortened so a hostile megabyte never
// reaches a log line or a response.
func quote(s string) string {
	return strconv.Quote(wire.Clip(s, maxQuotedBadText))
}

func checkProductKey(k string) error { return invalidInput(wire.CheckKey("product key", k)) }

func checkModule(m string) error { return invalidInput(wire.CheckKey("module", m)) }

func checkDeviceKey(k string) error { return invalidInput(wire.CheckKey("device key", k)) }

// invalidInput turns a broken identifier rule into the API's invalid-input
// error.
func invalidInput(err error) error {
	if err == nil {
		return nil
	}
	var we *wire.Error
	if errors.As(err, &we) {
		return ota.Errorf(ota.EINVALID, "%s", we.Message)
	}
	return ota.Errorf(ota.EINVALID, "%v", err)
}

// checkText bounds a free-form name or description by the domain's rule,
// the one a task's name follows.
func checkText(what, s string, limit int) error {
	if msg := ota.TextProblem(what, s, limit); msg != "" {
		return ota.Errorf(ota.EINVALID, "%s", msg)
	}
	return nil
}

// kvRule describes one kind of name=value pair: device tags or firmware
// params.
type kvRule struct {
	what     string // "tag" or "param"
	maxPairs int
	// checkValue is the wire rule of the values.
	checkValue func(name, value string) error
}

var (
	tagRule   = kvRule{what: "tag", maxPairs: maxTags, checkValue: wire.CheckTagValue}
	paramRule = kvRule{what: "param", maxPairs: maxParams, checkValue: wire.CheckParamValue}
)

// parse splits "name=value" at the first '=' and checks both parts.
func (k kvRule) parse(s string) (string, string, error) {
	name, value, ok := strings.Cut(s, "=")
	if !ok {
		return "", "", ota.Errorf(ota.EINVALID, "%s %s has no value: write name=value", k.what, quote(s))
	}
	if err := k.check(name, value); err != nil {
		return "", "", err
	}
	return name, value, nil
}

// check checks one name and value.
func (k kvRule) check(name, value string) error {
	if err := wire.CheckKey(k.what+" name", name); err != nil {
		return invalidInput(err)
	}
	return invalidInput(k.checkValue(name, value))
}

// parseAll parses a list of "name=value" pairs into a map; a name given
// twice is refused rather than silently overwritten.
func (k kvRule) parseAll(pairs []string) (map[string]string, error) {
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		name, value, err := k.parse(p)
		if err != nil {
			return nil, err
		}
		if _, dup := m[name]; dup {
			return nil, ota.Errorf(ota.EINVALID, "%s %s is given twice", k.what, name)
		}
		m[name] = value
	}
	return m, k.checkCount(len(m))
}

// checkMap checks a map given as JSON.
func (k kvRule) checkMap(m map[string]string) error {
	for name, value := range m {
		if err := k.check(name, value); err != nil {
			return err
		}
	}
	return k.checkCount(len(m))
}

func (k kvRule) checkCount(n int) error {
	if n > k.maxPairs {
		return ota.Errorf(ota.EINVALID, "%d %ss given: at most %d are allowed", n, k.what, k.maxPairs)
	}
	return nil
}
