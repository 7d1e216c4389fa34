package wire

import "strings"

// TopicPrefix starts every otter topic. The version segment lets a later
// protocol live beside this one on the same broker.
const TopicPrefix = "otter/v1"

// Kind names one message of the protocol; it is the last segment of the
// message's topic and of its HTTP path.
type Kind string

// Uplink kinds, sent by a device.
const (
	KindInform   Kind = "inform"   // the versions the device runs
	KindRequest  Kind = "request"  // the device asks for an upgrade
	KindConfirm  Kind = "confirm"  // the device accepts or declines an upgrade
	KindProgress Kind = "progress" // how far an upgrade has come
	// KindPresence says whether the device is online. Its offline form is
	// the device's MQTT last will, which an external broker publishes when
	// the connection ends without a DISCONNECT; the embedded broker sees
	// connections itself and ignores it.
	KindPresence Kind = "presence"
)

// Downlink kinds, sent to a device.
const (
	KindUpgrade Kind = "upgrade" // an upgrade command, an offer or a cancel
	KindReply   Kind = "reply"   // an answer that carries no upgrade
)

// UplinkKinds lists the kinds a device sends, in protocol order.
var UplinkKinds = []Kind{KindInform, KindRequest, KindConfirm, KindProgress}

// DownlinkKinds lists the kinds a device receives.
var DownlinkKinds = []Kind{KindUpgrade, KindReply}

// Uplink reports whether devices send messages of kind k.
func (k Kind) Uplink() bool {
	return k == KindInform || k == KindRequest || k == KindConfirm || k == KindProgress || k == KindPresence
}

// Downlink reports whether devices receive messages of kind k.
func (k Kind) Downlink() bool { return k == KindUpgrade || k == KindReply }

// Topic returns the topic of messages of kind k for one device, e.g.
// "otter/v1/thermostat/d1/inform".
func Topic(product, device string, k Kind) string {
	return TopicPrefix + "/" + product + "/" + device + "/" + string(k)
}

// SubscriptionFilter returns the MQTT filter matching kind k for every
// device, e.g. "otter/v1/+/+/progress", for a server that takes uplinks.
func SubscriptionFilter(k Kind) string { return TopicPrefix + "/+/+/" + string(k) }

// ParseTopic splits an otter topic into its product, device and kind. It
// fails with a *Error of code unknown_topic when the topic is not one of the
// protocol's: wrong prefix, wrong segment count, an invalid key or an unknown
// kind.
func ParseTopic(topic string) (product, device string, kind Kind, err error) {
	rest, ok := strings.CutPrefix(topic, TopicPrefix+"/")
	if !ok {
		return "", "", "", errorf(CodeUnknownTopic, "topic %q does not start with %q", Clip(topic, maxQuoted), TopicPrefix+"/")
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return "", "", "", errorf(CodeUnknownTopic, "topic %q must be %s/{product}/{device}/{kind}", Clip(topic, maxQuoted), TopicPrefix)
	}
	for i, what := range []string{"product key", "device key"} {
		if p := keyProblem(what, parts[i]); p != "" {
			return "", "", "", errorf(CodeUnknownTopic, "topic %q: %s", Clip(topic, maxQuoted), p)
		}
	}
	k := Kind(parts[2])
	if !k.Uplink() && !k.Downlink() {
		return "", "", "", errorf(CodeUnknownTopic, "topic %q: unknown message kind %q (want one of inform, request, confirm, progress, presence, upgrade, reply)", Clip(topic, maxQuoted), Clip(parts[2], maxQuoted))
	}
	return parts[0], parts[1], k, nil
}
