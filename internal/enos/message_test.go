package enos_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/otter-ota/otter/internal/enos"
	"github.com/otter-ota/otter/sdk/wire"
)

func TestParseTopic(t *testing.T) {
	tests := []struct {
		topic, product, device string
		kind                   enos.Kind
		bad                    bool
	}{
		{topic: "/sys/p/d/ota/device/inform", product: "p", device: "d", kind: enos.KindInform},
		{topic: "/sys/p/d/ota/device/progress", product: "p", device: "d", kind: enos.KindProgress},
		{topic: "/sys/p/d/ota/device/getversion", product: "p", device: "d", kind: enos.KindGetVersion},
		{topic: "/sys/p/d/ota/device/request", product: "p", device: "d", kind: enos.KindRequest},
		{topic: "/sys/p/d/ota/device/upgrade_reply", product: "p", device: "d", kind: enos.KindUpgradeReply},
		{topic: "/sys/p/d/thing/event/property/post", product: "p", device: "d", kind: enos.KindOther},
		{topic: "/sys/p/d/ota/device/inform_reply", product: "p", device: "d", kind: enos.KindOther},
		{topic: "/sys/p/d/", bad: true},
		{topic: "/sys/p", bad: true},
		{topic: "sys/p/d/ota/device/inform", bad: true},
		{topic: "otter/v1/p/d/inform", bad: true},
		{topic: "/sys//d/ota/device/inform", bad: true},
	}
	for _, tt := range tests {
		p, d, k, err := enos.ParseTopic(tt.topic)
		if (err != nil) != tt.bad || !tt.bad && (p != tt.product || d != tt.device || k != tt.kind) {
			t.Errorf("ParseTopic(%q) = %q, %q, %q, %v", tt.topic, p, d, k, err)
		}
	}
	if got := enos.Topic("p", "d", enos.KindUpgrade); got != "/sys/p/d/ota/device/upgrade" {
		t.Errorf("Topic = %q", got)
	}
	if got := enos.ReplyTopic(enos.Topic("p", "d", enos.KindInform)); got != "/sys/p/d/ota/device/inform_reply" {
		t.Errorf("ReplyTopic = %q", got)
	}
}

func TestDecodeInform(t *testing.T) {
	tests := []struct {
		payload, id, version string
		bad                  bool
	}{
		{payload: `{"id":"123","version":"1.0","method":"ota.device.inform","params":{"version":"1.2.0"}}`, id: `"123"`, version: "1.2.0"},
		{payload: `{"id":7,"method":"ota.inform","params":{"version":1.0}}`, id: `7`, version: "1.0"},
		{payload: `{"params":{"version":"v2"}}`, version: "v2"},
		{payload: `{"id":"1","params":{}}`, id: `"1"`, bad: true},
		{payload: `{"id":"1","params":{"version":""}}`, id: `"1"`, bad: true},
		{payload: `{"id":"1"}`, id: `"1"`, bad: true},
		{payload: `{"id":"1","params":{"version":true}}`, id: `"1"`, bad: true},
		{payload: `{"id":{"x":1},"params":{"version":"1"}}`, version: "1"},
		{payload: `{"id":"1","params":{"version":"1.0 0"}}`, id: `"1"`, bad: true},
		{payload: `{"id":"1","params":{"version":"1.0\t0"}}`, id: `"1"`, bad: true},
		{payload: `{"id":"1","params":{"version":"` + strings.Repeat("9", wire.MaxVersionLen+1) + `"}}`, id: `"1"`, bad: true},
		{payload: `{"id":"1","params":{"version":"` + strings.Repeat("9", wire.MaxVersionLen) + `"}}`, id: `"1"`, version: strings.Repeat("9", wire.MaxVersionLen)},
	}
	for _, tt := range tests {
		r, err := enos.DecodeRequest([]byte(tt.payload))
		if err != nil {
			t.Fatalf("DecodeRequest(%s): %v", tt.payload, err)
		}
		if string(r.ID) != tt.id {
			t.Errorf("%s: id %s, want %s", tt.payload, r.ID, tt.id)
		}
		v, err := enos.DecodeInform(r.Params)
		if (err != nil) != tt.bad || v != tt.version {
			t.Errorf("DecodeInform(%s) = %q, %v; want %q (error %v)", tt.payload, v, err, tt.version, tt.bad)
		}
	}
	for _, bad := range []string{``, `[]`, `{`, `"x"`, strings.Repeat(" ", enos.MaxMessage+1)} {
		if _, err := enos.DecodeRequest([]byte(bad)); err == nil {
			t.Errorf("DecodeRequest(%.20q) took it", bad)
		}
	}
}

func TestStep(t *testing.T) {
	tests := []struct {
		params string
		want   enos.Outcome
		bad    bool
	}{
		{params: `{"step":"0"}`, want: enos.Outcome{Kind: enos.StepPercent}},
		{params: `{"step":"35","desc":"downloading firmware finished"}`, want: enos.Outcome{Kind: enos.StepPercent, Percent: 35}},
		{params: `{"step":80}`, want: enos.Outcome{Kind: enos.StepPercent, Percent: 80}},
		{params: `{"step":"100"}`, want: enos.Outcome{Kind: enos.StepDone, Percent: 100}},
		{params: `{"step":"-1","desc":"boom"}`, want: enos.Outcome{Kind: enos.StepFailed, Code: enos.CodeUpgradeFailed, Message: "boom"}},
		{params: `{"step":"-2"}`, want: enos.Outcome{Kind: enos.StepFailed, Code: enos.CodeDownloadFailed}},
		{params: `{"step":-3}`, want: enos.Outcome{Kind: enos.StepFailed, Code: enos.CodeVerifyFailed}},
		{params: `{"step":"-4"}`, want: enos.Outcome{Kind: enos.StepFailed, Code: enos.CodeInstallFailed}},
		{params: `{"step":"-5","desc":"user said later"}`, want: enos.Outcome{Kind: enos.StepDeclined, Message: "user said later"}},
		{params: `{"step":"-9","desc":"battery\nlow"}`, want: enos.Outcome{Kind: enos.StepFailed, Code: enos.CodeDeviceDefined, Message: "EnOS step -9: battery low"}},
		{params: `{"step":"-6"}`, want: enos.Outcome{Kind: enos.StepFailed, Code: enos.CodeDeviceDefined, Message: "EnOS step -6"}},
		{params: `{"step":"101"}`, bad: true},
		{params: `{"step":"2.5"}`, bad: true},
		{params: `{"step":""}`, bad: true},
		{params: `{"desc":"x"}`, bad: true},
		{params: `{"step":null}`, bad: true},
		{params: `[]`, bad: true},
	}
	for _, tt := range tests {
		p, err := enos.DecodeProgress(json.RawMessage(tt.params))
		if (err != nil) != tt.bad {
			t.Errorf("DecodeProgress(%s) error %v, want error %v", tt.params, err, tt.bad)
			continue
		}
		if tt.bad {
			continue
		}
		if diff := cmp.Diff(tt.want, enos.Step(p)); diff != "" {
			t.Errorf("Step(%s) (-want +got):\n%s", tt.params, diff)
		}
	}
}

func TestEncode(t *testing.T) {
	f := enos.Firmware{Version: "1.1.0", Sign: "ab12", SignMethod: "sha256", FileURL: "http://h/dl/1?s=x&e=2", FileSize: 1024}
	got := string(enos.Upgrade("42", f))
	want := `{"id":"42","version":"1.0","method":"ota.device.upgrade","params":{"version":"1.1.0","sign":"ab12","signMethod":"sha256","fileUrl":"http://h/dl/1?s=x\u0026e=2","fileSize":1024}}`
	if got != want {
		t.Errorf("Upgrade =\n%s\nwant\n%s", got, want)
	}
	if got := string(enos.Reply(json.RawMessage(`"123"`), 200, nil, "")); got != `{"id":"123","code":200,"data":{}}` {
		t.Errorf("Reply = %s", got)
	}
	if got := string(enos.Reply(json.RawMessage(`7`), 200, []enos.Firmware{f}, "")); !strings.HasPrefix(got, `{"id":7,"code":200,"data":[{"version":"1.1.0",`) {
		t.Errorf("Reply with a list = %s", got)
	}
	if got := string(enos.Reply(nil, 460, nil, "params.version missing")); got != `{"code":460,"data":{},"message":"params.version missing"}` {
		t.Errorf("error Reply = %s", got)
	}
	r, err := enos.DecodeUpgradeReply([]byte(`{"id":"42","code":1101,"message":"downstream command handler not registered"}`))
	if err != nil || r.ID != "42" || r.Code != 1101 {
		t.Errorf("DecodeUpgradeReply = %+v, %v", r, err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"id":"123","version":"1.0","method":"ota.device.progress","params":{"step":"35","desc":"x"}}`))
	f.Add([]byte(`{"id":1,"params":{"version":1.0}}`))
	f.Add([]byte(`{"id":"1","code":200,"data":""}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		r, err := enos.DecodeRequest(payload)
		if err != nil {
			return
		}
		if len(r.ID) > 0 && !json.Valid(r.ID) {
			t.Fatalf("id %q is not valid JSON to echo", r.ID)
		}
		if !json.Valid(enos.Reply(r.ID, 200, nil, "m")) {
			t.Fatal("the reply is not valid JSON")
		}
		if v, err := enos.DecodeInform(r.Params); err == nil && v == "" {
			t.Fatal("an inform without a version decoded")
		}
		if p, err := enos.DecodeProgress(r.Params); err == nil {
			o := enos.Step(p)
			if o.Kind == enos.StepPercent && (o.Percent < 0 || o.Percent > 99) || len(o.Message) > 1024 {
				t.Fatalf("step %d maps to %+v", p.Step, o)
			}
		}
		_, _ = enos.DecodeUpgradeReply(payload)
	})
}

func FuzzParseTopic(f *testing.F) {
	f.Add("/sys/p/d/ota/device/inform")
	f.Add("/sys/p/d/x")
	f.Fuzz(func(t *testing.T, topic string) {
		p, d, k, err := enos.ParseTopic(topic)
		if err != nil {
			return
		}
		if !strings.HasPrefix(topic, enos.Tree(p, d)) {
			t.Fatalf("ParseTopic(%q) = %q, %q outside the tree", topic, p, d)
		}
		if k != enos.KindOther && enos.Topic(p, d, k) != topic {
			t.Fatalf("ParseTopic(%q) kind %q rebuilds %q", topic, k, enos.Topic(p, d, k))
		}
	})
}
