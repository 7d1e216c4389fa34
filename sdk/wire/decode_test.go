package wire

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
)

var (
	testSHA = strings.Repeat("ab", 32)
	testSig = strings.Repeat("A", 86) + "=="
)

// decodeCase is one input for a decoder and the code it must fail with
// ("" when it must succeed).
type decodeCase struct {
	name string
	in   string
	code string
}

func runDecodeCases[M Message](t *testing.T, decode func([]byte) (M, error), cases []decodeCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := decode([]byte(tc.in))
			if got := ErrorCode(err); got != tc.code {
				t.Fatalf("decode(%s) error = %v (code %q), want code %q", tc.in, err, got, tc.code)
			}
			if err != nil {
				if e := err.(*Error); e.Message == "" {
					t.Fatalf("error %v has no message", err)
				}
				return
			}
			again, err := decode(Encode(m))
			if err != nil || !reflect.DeepEqual(again, m) {
				t.Fatalf("round trip of %+v: got %+v, %v", m, again, err)
			}
		})
	}
}

func TestDecodeInform(t *testing.T) {
	runDecodeCases(t, DecodeInform, []decodeCase{
		{"ok", `{"modules":{"default":"1.0.0"}}`, ""},
		{"several", `{"modules":{"default":"1.0.0","modem":"2.3-rc.1+b7"}}`, ""},
		{"unknown fields ignored", `{"modules":{"default":"1.0.0"},"uptime":12}`, ""},
		{"missing modules", `{}`, CodeMalformed},
		{"empty modules", `{"modules":{}}`, CodeMalformed},
		{"empty version", `{"modules":{"default":""}}`, CodeMalformed},
		{"version with space", `{"modules":{"default":"1 0"}}`, CodeMalformed},
		{"opaque version", `{"modules":{"default":"build-ä-2024"}}`, ""},
		{"long version", `{"modules":{"default":"` + strings.Repeat("1", MaxVersionLen+1) + `"}}`, CodeMalformed},
		{"bad module name", `{"modules":{"a/b":"1"}}`, CodeMalformed},
		{"version not a string", `{"modules":{"default":1}}`, CodeMalformed},
		{"array", `[1]`, CodeMalformed},
		{"null", `null`, CodeMalformed},
		{"empty", ``, CodeMalformed},
		{"trailing garbage", `{"modules":{"default":"1"}} x`, CodeMalformed},
		{"too large", `{"modules":{"default":"1"},"pad":"` + strings.Repeat("x", MaxMessageSize) + `"}`, CodeTooLarge},
	})
}

func TestDecodeRequest(t *testing.T) {
	runDecodeCases(t, DecodeRequest, []decodeCase{
		{"ok", `{"module":"default"}`, ""},
		{"with version", `{"module":"default","version":"1.0.0"}`, ""},
		{"missing module", `{}`, CodeMalformed},
		{"module not a string", `{"module":true}`, CodeMalformed},
		{"bad version", `{"module":"default","version":"\u0001"}`, CodeMalformed},
	})
}

func TestDecodeConfirm(t *testing.T) {
	runDecodeCases(t, DecodeConfirm, []decodeCase{
		{"accept", `{"job":"42","accept":true}`, ""},
		{"decline", `{"job":"42","accept":false,"message":"user said no"}`, ""},
		{"attempt", `{"job":"42","attempt":2,"accept":true}`, ""},
		{"install stage", `{"job":"42","stage":"install","accept":false,"message":"battery low"}`, ""},
		{"download stage", `{"job":"42","stage":"download","accept":true}`, ""},
		{"unknown stage", `{"job":"42","stage":"reboot","accept":true}`, CodeMalformed},
		{"stage not a string", `{"job":"42","stage":1,"accept":true}`, CodeMalformed},
		{"missing accept", `{"job":"42"}`, CodeMalformed},
		{"null accept", `{"job":"42","accept":null}`, CodeMalformed},
		{"accept not bool", `{"job":"42","accept":"yes"}`, CodeMalformed},
		{"missing job", `{"accept":true}`, CodeMalformed},
		{"job number", `{"job":42,"accept":true}`, CodeMalformed},
		{"negative attempt", `{"job":"42","attempt":-1,"accept":true}`, CodeMalformed},
		{"long message", `{"job":"42","accept":false,"message":"` + strings.Repeat("m", MaxTextLength+1) + `"}`, CodeMalformed},
	})
}

func TestDecodeProgress(t *testing.T) {
	runDecodeCases(t, DecodeProgress, []decodeCase{
		{"downloading", `{"job":"J","state":"downloading","percent":40}`, ""},
		{"downloaded", `{"job":"J","state":"downloaded"}`, ""},
		{"installing", `{"job":"J","state":"installing"}`, ""},
		{"rebooting", `{"job":"J","state":"rebooting"}`, ""},
		{"failed", `{"job":"J","state":"failed","code":"verify_failed","message":"sha256 differs"}`, ""},
		{"failed custom code", `{"job":"J","state":"failed","code":"battery_low"}`, ""},
		{"failed without code", `{"job":"J","state":"failed"}`, CodeMalformed},
		{"failed bad code", `{"job":"J","state":"failed","code":"Bad Code"}`, CodeMalformed},
		{"unknown state", `{"job":"J","state":"done"}`, CodeMalformed},
		{"missing state", `{"job":"J"}`, CodeMalformed},
		{"percent over", `{"job":"J","state":"downloading","percent":101}`, CodeMalformed},
		{"percent under", `{"job":"J","state":"downloading","percent":-1}`, CodeMalformed},
		{"percent fraction", `{"job":"J","state":"downloading","percent":4.5}`, CodeMalformed},
		{"missing job", `{"state":"installing"}`, CodeMalformed},
		{"long job", `{"job":"` + strings.Repeat("1", MaxFieldLength+1) + `","state":"installing"}`, CodeMalformed},
	})
}

func upgradeJSON(replace ...string) string {
	s := `{"job":"7","attempt":1,"module":"default","version":"1.1.0","size":1024,"sha256":"` + testSHA +
		`","signature":"` + testSig + `","url":"https://otter.example/dl/7?sig=x","confirm":false,"mode":"push","params":{"k":"v"},"allow_downgrade":false}`
	return strings.NewReplacer(replace...).Replace(s)
}

func TestDecodeUpgrade(t *testing.T) {
	runDecodeCases(t, DecodeUpgrade, []decodeCase{
		{"push", upgradeJSON(), ""},
		{"request", upgradeJSON(`"push"`, `"request"`, `"confirm":false`, `"confirm":true`), ""},
		{"signed command", upgradeJSON(`"allow_downgrade":false`, `"allow_downgrade":false,"confirm_install":true,"command_signature":"`+testSig+`"`), ""},
		{"bad command signature", upgradeJSON(`"allow_downgrade":false`, `"allow_downgrade":false,"command_signature":"AAAA"`), CodeMalformed},
		{"cancel", `{"job":"7","cancel":true}`, ""},
		{"cancel without job", `{"cancel":true}`, CodeMalformed},
		{"missing module", upgradeJSON(`"module":"default",`, ``), CodeMalformed},
		{"missing version", upgradeJSON(`"version":"1.1.0",`, ``), CodeMalformed},
		{"zero size", upgradeJSON(`"size":1024`, `"size":0`), CodeMalformed},
		{"uppercase sha", upgradeJSON(testSHA, strings.ToUpper(testSHA)), CodeMalformed},
		{"short sha", upgradeJSON(testSHA, "abcd"), CodeMalformed},
		{"bad signature", upgradeJSON(testSig, "not base64!"), CodeMalformed},
		{"short signature", upgradeJSON(testSig, "AAAA"), CodeMalformed},
		{"relative url", upgradeJSON("https://otter.example/dl/7?sig=x", "/dl/7"), CodeMalformed},
		{"ftp url", upgradeJSON("https://otter.example/dl/7?sig=x", "ftp://otter.example/7"), CodeMalformed},
		{"bad mode", upgradeJSON(`"push"`, `"pull"`), CodeMalformed},
		{"params not strings", upgradeJSON(`{"k":"v"}`, `{"k":1}`), CodeMalformed},
		{"too large", `{"job":"7","cancel":true,"pad":"` + strings.Repeat("x", MaxDownlinkSize) + `"}`, CodeTooLarge},
	})
}

func TestDecodeReply(t *testing.T) {
	runDecodeCases(t, DecodeReply, []decodeCase{
		{"no upgrade", `{"to":"request","module":"default","error":"no_upgrade","message":"you run the latest","retry_after":3600}`, ""},
		{"malformed", `{"to":"progress","job":"7","error":"malformed","message":"bad state"}`, ""},
		{"unknown topic", `{"to":"status","error":"unknown_topic"}`, ""},
		{"missing error", `{"to":"request"}`, CodeMalformed},
		{"missing to", `{"error":"internal"}`, CodeMalformed},
		{"negative retry", `{"to":"request","error":"no_upgrade","retry_after":-1}`, CodeMalformed},
	})
}

func TestDecodeDispatch(t *testing.T) {
	m, err := Decode(KindProgress, []byte(`{"job":"1","state":"installing"}`))
	if err != nil || m.Kind() != KindProgress {
		t.Fatalf("Decode(progress) = %v, %v", m, err)
	}
	if _, err := Decode("status", []byte(`{}`)); ErrorCode(err) != CodeUnknownTopic {
		t.Fatalf("Decode(status) error = %v, want code %s", err, CodeUnknownTopic)
	}
}

func TestEncodeCancel(t *testing.T) {
	if got, want := string(Encode(CancelUpgrade("7", 0))), `{"job":"7","cancel":true}`; got != want {
		t.Errorf("Encode(cancel) = %s, want %s", got, want)
	}
}

func TestErrorReply(t *testing.T) {
	_, err := DecodeProgress([]byte(`{"job":"1","state":"nope"}`))
	r := ErrorReply(KindProgress, err)
	if r.To != KindProgress || r.Error != CodeMalformed || !strings.Contains(r.Message, "nope") {
		t.Errorf("ErrorReply(malformed) = %+v", r)
	}
	r = ErrorReply(KindInform, errTest("database on fire"))
	if r.Error != CodeInternal || strings.Contains(r.Message, "fire") {
		t.Errorf("ErrorReply(internal) = %+v leaks the cause or has the wrong code", r)
	}
	if err := r.Validate(); err != nil {
		t.Errorf("ErrorReply result does not validate: %v", err)
	}
}

type errTest string

func (e errTest) Error() string { return string(e) }

// TestManifestWorkedExample pins the example of docs/protocol.md: if it
// changes, every device that verifies signatures without the SDK breaks.
func TestManifestWorkedExample(t *testing.T) {
	file := []byte("hello otter\n")
	sum := sha256.Sum256(file)
	m := Manifest{Product: "thermostat", Module: "default", Version: "1.1.0", Size: int64(len(file)), SHA256: hex.EncodeToString(sum[:])}
	wantBytes := `DSSEv1 35 application/vnd.otter.manifest+json 147 {"product":"thermostat","module":"default","version":"1.1.0","size":12,"sha256":"` + m.SHA256 + `"}`
	if got := string(m.SignedBytes()); got != wantBytes {
		t.Fatalf("SignedBytes =\n%s\nwant\n%s", got, wantBytes)
	}
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)) // all-zero seed: an example, never a real key
	sig := m.Sign(key)
	const wantSig = "AaiZn1BZRE+Iw/tYDOa76Apeu+0bkNMG0IAAwIRZ6ES4ylN2aPYZXo+ntsNYReVTX9LC2eEmwiCT0jGUhWQpDg=="
	if sig != wantSig { // ed25519 is deterministic: the documented signature must not change
		t.Fatalf("Sign = %s, want %s", sig, wantSig)
	}
	if !m.Verify(key.Public().(ed25519.PublicKey), sig) {
		t.Fatal("Verify of a fresh signature failed")
	}
	m.Version = "1.1.1"
	if m.Verify(key.Public().(ed25519.PublicKey), sig) {
		t.Fatal("Verify accepted a signature over another version")
	}
}

// TestCommandWorkedExample pins the command signature example of
// docs/protocol.md section 7.
func TestCommandWorkedExample(t *testing.T) {
	c := Command{Product: "thermostat", Device: "d1", Job: "42", Attempt: 1, Module: "default", Version: "1.1.0", Size: 12,
		SHA256: "82cf02e4cd2a557d3f1ad35b4f0bf7158e4c2fab63e918c63825d3107269d31c", Mode: ModePush, ConfirmInstall: true}
	payload := `{"product":"thermostat","device":"d1","job":"42","attempt":1,"module":"default","version":"1.1.0","size":12,` +
		`"sha256":"82cf02e4cd2a557d3f1ad35b4f0bf7158e4c2fab63e918c63825d3107269d31c","mode":"push","confirm":false,` +
		`"confirm_install":true,"allow_downgrade":false,"params":{}}`
	if got := string(c.SignedBytes()); got != "DSSEv1 34 application/vnd.otter.command+json 273 "+payload {
		t.Fatalf("SignedBytes =\n%s", got)
	}
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	const wantSig = "uZotv3eK2O6Nm+hEqwFdxpd48TINMTFicFgO8GvuwEmVnrjgbxqkSdYM/ZChejUXtEMZCZCoN9MrOEnbTFTODA=="
	if sig := c.Sign(key); sig != wantSig {
		t.Fatalf("Sign = %s, want %s", sig, wantSig)
	}
	pub := key.Public().(ed25519.PublicKey)
	up := Upgrade{Job: "42", Attempt: 1, Module: "default", Version: "1.1.0", Size: 12, SHA256: c.SHA256, Mode: ModePush, ConfirmInstall: true}
	if !up.Command("thermostat", "d1").Verify(pub, wantSig) {
		t.Fatal("the command of the matching upgrade does not verify")
	}
	for name, tamper := range map[string]func(*Upgrade){
		"allow_downgrade": func(u *Upgrade) { u.AllowDowngrade = true },
		"confirm":         func(u *Upgrade) { u.ConfirmInstall = false },
		"params":          func(u *Upgrade) { u.Params = map[string]string{"k": "v"} },
		"attempt":         func(u *Upgrade) { u.Attempt = 2 },
		"mode":            func(u *Upgrade) { u.Mode = ModeRequest },
	} {
		u := up
		tamper(&u)
		if u.Command("thermostat", "d1").Verify(pub, wantSig) {
			t.Errorf("a command with %s changed verifies", name)
		}
	}
	if up.Command("thermostat", "d2").Verify(pub, wantSig) {
		t.Error("the command verifies for another device")
	}
}

func FuzzDecodeInform(f *testing.F)  { fuzzDecoder(f, DecodeInform, `{"modules":{"default":"1.0.0"}}`) }
func FuzzDecodeRequest(f *testing.F) { fuzzDecoder(f, DecodeRequest, `{"module":"default"}`) }
func FuzzDecodeConfirm(f *testing.F) {
	fuzzDecoder(f, DecodeConfirm, `{"job":"1","accept":true}`, `{"job":"1","stage":"install","accept":false,"message":"later"}`)
}
func FuzzDecodeProgress(f *testing.F) {
	fuzzDecoder(f, DecodeProgress, `{"job":"1","state":"failed","code":"x"}`)
}
func FuzzDecodeUpgrade(f *testing.F) {
	fuzzDecoder(f, DecodeUpgrade, upgradeJSON(), `{"job":"1","cancel":true}`)
}
func FuzzDecodeReply(f *testing.F) {
	fuzzDecoder(f, DecodeReply, `{"to":"request","error":"no_upgrade"}`)
}

// fuzzDecoder checks that a decoder never panics, fails only with a
// *Error, and that what it accepts validates and survives a round trip.
func fuzzDecoder[M Message](f *testing.F, decode func([]byte) (M, error), seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decode(b)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %v is a %T, not a *Error", err, err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("accepted message does not validate: %v", err)
		}
		if again, err := decode(Encode(m)); err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip of %+v: %+v, %v", m, again, err)
		}
	})
}

func TestJobNamed(t *testing.T) {
	for _, tt := range []struct {
		payload, want string
	}{
		{`{"job":"42","state":"downloading","percent":140}`, "42"},
		{`{"job":"42","state":`, ""}, // not JSON: the job is not known
		{`{"job":42}`, ""},
		{`{"job":"has space"}`, ""},
		{`{"job":""}`, ""},
		{`["42"]`, ""},
		{`{"modules":{"default":"1.0.0"}}`, ""},
		{`{"job":"` + strings.Repeat("9", MaxFieldLength+1) + `"}`, ""},
	} {
		if got := JobNamed([]byte(tt.payload)); got != tt.want {
			t.Errorf("JobNamed(%.40s) = %q, want %q", tt.payload, got, tt.want)
		}
	}
}

// A wrong type names the field a device developer must fix; inside a map
// (modules, params), the values of that field.
func TestDecodeTypeErrorsNameTheField(t *testing.T) {
	tests := []struct {
		kind Kind
		in   string
		want string
	}{
		{KindInform, `{"modules":{"default":1}}`, `the values of field "modules" must be a string, not a JSON number`},
		{KindInform, `{"modules":["1.0.0"]}`, `field "modules" must be an object, not a JSON array`},
		{KindProgress, `{"job":42,"state":"installing"}`, `field "job" must be a string, not a JSON number`},
		{KindUpgrade, `{"job":"1","params":{"a":true}}`, `the values of field "params" must be a string, not a JSON bool`},
	}
	for _, tt := range tests {
		_, err := Decode(tt.kind, []byte(tt.in))
		if ErrorCode(err) != CodeMalformed || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Decode(%s, %s) = %v, want malformed saying %q", tt.kind, tt.in, err, tt.want)
		}
	}
}
