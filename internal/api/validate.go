package api

import (
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/otter-ota/otter/internal/ota"
)

// Key rules of the API contract. Device keys allow upper case for serial
// numbers; they appear in MQTT topics and in the HTTP Basic user name
// "{product}/{device}", so no ':' (write MAC addresses with '-'), '/', '+'
// or '#'. They are a subset of the wire protocol's key rule (wire.CheckKey).
// Product and module keys end up in topics and file names too, so they stay
// lower case.
var (
	productKeyRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	deviceKeyRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	nameRE       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`) // tag and param names
)

// Limits on free-form input, so that one request cannot store megabytes.
const (
	maxTags          = 32
	maxTagValue      = 256
	maxParams        = 64
	maxParamValue    = 1024
	maxNameLen       = 200
	maxDescription   = 4000
	productKeyRule   = "1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
	deviceKeyRule    = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit (no ':': write a MAC address as aa-bb-cc-dd-ee-ff)"
	nameRule         = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
	maxQuotedBadText = 64
)

// quote quotes s for an error message, shortened so a hostile megabyte never
// reaches a log line or a response.
func quote(s string) string {
	if len(s) > maxQuotedBadText {
		s = s[:maxQuotedBadText] + "..."
	}
	return strconv.Quote(s)
}

func checkProductKey(k string) error {
	if !productKeyRE.MatchString(k) {
		return ota.Errorf(ota.EINVALID, "product key %s is not valid: use %s", quote(k), productKeyRule)
	}
	return nil
}

func checkModule(m string) error {
	if !productKeyRE.MatchString(m) {
		return ota.Errorf(ota.EINVALID, "module %s is not valid: use %s", quote(m), productKeyRule)
	}
	return nil
}

func checkDeviceKey(k string) error {
	if !deviceKeyRE.MatchString(k) {
		return ota.Errorf(ota.EINVALID, "device key %s is not valid: use %s", quote(k), deviceKeyRule)
	}
	return nil
}

// checkText bounds a free-form name or description.
func checkText(what, s string, limit int) error {
	switch {
	case len(s) > limit:
		return ota.Errorf(ota.EINVALID, "%s is %d bytes long: at most %d are allowed", what, len(s), limit)
	case !utf8.ValidString(s):
		return ota.Errorf(ota.EINVALID, "%s is not valid UTF-8", what)
	case strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }):
		return ota.Errorf(ota.EINVALID, "%s contains control characters", what)
	}
	return nil
}

// kvRule describes one kind of name=value pair: device tags or firmware
// params.
type kvRule struct {
	what     string // "tag" or "param"
	maxValue int
	maxPairs int
	// commaOK allows commas in values; tags refuse them because the device
	// CSV import separates tags with commas.
	commaOK bool
}

var (
	tagRule   = kvRule{what: "tag", maxValue: maxTagValue, maxPairs: maxTags}
	paramRule = kvRule{what: "param", maxValue: maxParamValue, maxPairs: maxParams, commaOK: true}
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
	if !nameRE.MatchString(name) {
		return ota.Errorf(ota.EINVALID, "%s name %s is not valid: use %s", k.what, quote(name), nameRule)
	}
	switch {
	case value == "":
		return ota.Errorf(ota.EINVALID, "%s %s has an empty value", k.what, name)
	case len(value) > k.maxValue:
		return ota.Errorf(ota.EINVALID, "%s %s: the value is %d bytes long, at most %d are allowed", k.what, name, len(value), k.maxValue)
	case !utf8.ValidString(value):
		return ota.Errorf(ota.EINVALID, "%s %s: the value is not valid UTF-8", k.what, name)
	case strings.ContainsFunc(value, unicode.IsControl):
		return ota.Errorf(ota.EINVALID, "%s %s: the value contains control characters", k.what, name)
	case !k.commaOK && strings.Contains(value, ","):
		return ota.Errorf(ota.EINVALID, "%s %s: the value contains a comma, which tags may not hold", k.what, name)
	}
	return nil
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
