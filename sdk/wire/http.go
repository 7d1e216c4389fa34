package wire

import "strings"

// Paths of the HTTP device API, for devices that cannot hold an MQTT
// connection. Every call authenticates with HTTP Basic auth: user name
// Username(product, device), password the device secret. Bodies are JSON of
// the message of the same kind.
//
//	POST /device/v1/inform    Inform   -> 204
//	POST /device/v1/request   Request  -> 200 Upgrade (an offer) or 200 Reply (no_upgrade)
//	POST /device/v1/confirm   Confirm  -> 204
//	POST /device/v1/progress  Progress -> 204
//	GET  /device/v1/upgrade            -> 200 Upgrade (command or cancel), 204 when none is pending
//
// Errors answer with a Reply and a 4xx or 5xx status; 429 and 503 carry
// Retry-After (seconds) and the device must wait at least that long.
const (
	HTTPPrefix   = "/device/v1/"
	PathInform   = HTTPPrefix + "inform"
	PathRequest  = HTTPPrefix + "request"
	PathConfirm  = HTTPPrefix + "confirm"
	PathProgress = HTTPPrefix + "progress"
	PathUpgrade  = HTTPPrefix + "upgrade"
)

// ContentType is the media type of every message body.
const ContentType = "application/json"

// HTTPPath returns the device API path of messages of kind k; a reply has
// no path of its own.
func HTTPPath(k Kind) string {
	if k == KindReply {
		return ""
	}
	return HTTPPrefix + string(k)
}

// Username returns the MQTT and HTTP user name of a device:
// "{product}/{device}".
func Username(product, device string) string { return product + "/" + device }

// ParseUsername splits a device user name into product and device keys,
// with a *Error of code unauthorized when it is not one.
func ParseUsername(user string) (product, device string, err error) {
	product, device, ok := strings.Cut(user, "/")
	if !ok {
		return "", "", errorf(CodeUnauthorized, "user name %q must be {product}/{device}", Clip(user, maxQuoted))
	}
	p := keyProblem("product key", product)
	if p == "" {
		p = keyProblem("device key", device)
	}
	if p != "" {
		return "", "", errorf(CodeUnauthorized, "user name: %s", p)
	}
	return product, device, nil
}
