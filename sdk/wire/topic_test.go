package wire

import (
	"errors"
	"strings"
	"testing"
)

func TestParseTopic(t *testing.T) {
	tests := []struct {
		topic           string
		product, device string
		kind            Kind
		wantErr         bool
	}{
		{"otter/v1/thermostat/d1/inform", "thermostat", "d1", KindInform, false},
		{"otter/v1/p/d/request", "p", "d", KindRequest, false},
		{"otter/v1/p/d/confirm", "p", "d", KindConfirm, false},
		{"otter/v1/p.x_y-z/D-9/progress", "p.x_y-z", "D-9", KindProgress, false},
		{"otter/v1/p/d/upgrade", "p", "d", KindUpgrade, false},
		{"otter/v1/p/d/reply", "p", "d", KindReply, false},
		{"otter/v2/p/d/inform", "", "", "", true},
		{"otter/v1/p/d", "", "", "", true},
		{"otter/v1/p/d/inform/x", "", "", "", true},
		{"otter/v1//d/inform", "", "", "", true},
		{"otter/v1/p//inform", "", "", "", true},
		{"otter/v1/p/d/", "", "", "", true},
		{"otter/v1/p/d/status", "", "", "", true},
		{"otter/v1/+/d/inform", "", "", "", true},
		{"otter/v1/p/#/inform", "", "", "", true},
		{"otter/v1/.p/d/inform", "", "", "", true},
		{"otter/v1/" + strings.Repeat("p", 65) + "/d/inform", "", "", "", true},
		{"", "", "", "", true},
	}
	for _, tt := range tests {
		p, d, k, err := ParseTopic(tt.topic)
		if tt.wantErr {
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeUnknownTopic {
				t.Errorf("ParseTopic(%q) error = %v, want a *Error with code %s", tt.topic, err, CodeUnknownTopic)
			}
			continue
		}
		if err != nil || p != tt.product || d != tt.device || k != tt.kind {
			t.Errorf("ParseTopic(%q) = %q, %q, %q, %v; want %q, %q, %q", tt.topic, p, d, k, err, tt.product, tt.device, tt.kind)
		}
	}
}

func TestTopicRoundTrip(t *testing.T) {
	for _, k := range append(append([]Kind{}, UplinkKinds...), DownlinkKinds...) {
		p, d, got, err := ParseTopic(Topic("prod", "dev", k))
		if err != nil || p != "prod" || d != "dev" || got != k {
			t.Errorf("ParseTopic(Topic(prod, dev, %s)) = %q, %q, %q, %v", k, p, d, got, err)
		}
	}
	if got, want := SubscriptionFilter(KindProgress), "otter/v1/+/+/progress"; got != want {
		t.Errorf("SubscriptionFilter = %q, want %q", got, want)
	}
}

func TestKindDirections(t *testing.T) {
	for _, k := range UplinkKinds {
		if !k.Uplink() || k.Downlink() {
			t.Errorf("%s: Uplink = %v, Downlink = %v", k, k.Uplink(), k.Downlink())
		}
	}
	for _, k := range DownlinkKinds {
		if k.Uplink() || !k.Downlink() {
			t.Errorf("%s: Uplink = %v, Downlink = %v", k, k.Uplink(), k.Downlink())
		}
	}
}

func TestParseUsername(t *testing.T) {
	tests := []struct {
		user            string
		product, device string
		ok              bool
	}{
		{"thermostat/d1", "thermostat", "d1", true},
		{Username("a", "b"), "a", "b", true},
		{"thermostat", "", "", false},
		{"/d1", "", "", false},
		{"p/", "", "", false},
		{"p/d/x", "", "", false},
		{"p q/d", "", "", false},
	}
	for _, tt := range tests {
		p, d, err := ParseUsername(tt.user)
		if tt.ok != (err == nil) || p != tt.product || d != tt.device {
			t.Errorf("ParseUsername(%q) = %q, %q, %v", tt.user, p, d, err)
		}
		if err != nil && ErrorCode(err) != CodeUnauthorized {
			t.Errorf("ParseUsername(%q) code = %s, want %s", tt.user, ErrorCode(err), CodeUnauthorized)
		}
	}
}

func TestHTTPPath(t *testing.T) {
	want := map[Kind]string{
		KindInform: PathInform, KindRequest: PathRequest, KindConfirm: PathConfirm,
		KindProgress: PathProgress, KindUpgrade: PathUpgrade, KindReply: "",
	}
	for k, p := range want {
		if got := HTTPPath(k); got != p {
			t.Errorf("HTTPPath(%s) = %q, want %q", k, got, p)
		}
	}
}

func FuzzParseTopic(f *testing.F) {
	f.Add("otter/v1/p/d/inform")
	f.Add("otter/v1/p/d/upgrade")
	f.Add("otter/v1/+/#/x")
	f.Add("otter/v1/p/d/inform/")
	f.Fuzz(func(t *testing.T, topic string) {
		p, d, k, err := ParseTopic(topic)
		if err != nil {
			if ErrorCode(err) != CodeUnknownTopic {
				t.Fatalf("ParseTopic(%q): error %v has code %s", topic, err, ErrorCode(err))
			}
			return
		}
		if Topic(p, d, k) != topic {
			t.Fatalf("ParseTopic(%q) = %q, %q, %q, which builds %q", topic, p, d, k, Topic(p, d, k))
		}
	})
}

func FuzzParseUsername(f *testing.F) {
	f.Add("p/d")
	f.Add("p/d/e")
	f.Fuzz(func(t *testing.T, user string) {
		p, d, err := ParseUsername(user)
		if err == nil && Username(p, d) != user {
			t.Fatalf("ParseUsername(%q) = %q, %q", user, p, d)
		}
	})
}
