package wire

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestProgressByHandIsEncodingJSON: Encode writes a progress message byte
// for byte as json.Marshal does, and DecodeProgress reads every input as
// encoding/json does (the value, or an error of the same code).
func TestProgressByHandIsEncodingJSON(t *testing.T) {
	msgs := []Progress{
		{Job: "42", Attempt: 1, State: StateDownloading},
		{Job: "42", Attempt: 3, State: StateDownloading, Percent: 40},
		{Job: "7", State: StateRebooting},
		{Job: "9", Attempt: 2, State: StateFailed, Code: "install_failed", Message: "slot b: write error at 0x1f"},
		{Job: "9", State: StateFailed, Code: "x", Message: `a "quoted" <b> & \ back`},
		{Job: "9", State: StateFailed, Code: "x", Message: "ünïcode\u2028line"},
		{Job: "9", State: StateFailed, Code: "x", Message: "tab\there\x7f"},
		{Job: "", State: ""},
	}
	for _, m := range msgs {
		want, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := Encode(m); string(got) != string(want) {
			t.Errorf("Encode(%+v) = %s, want %s", m, got, want)
		}
	}
	inputs := []string{
		`{"job":"42","attempt":1,"state":"downloading"}`,
		`{"job":"42","attempt":1,"state":"downloading","percent":0}`,
		`{"state":"downloaded","job":"42"}`,
		`{"job":"42","state":"downloading","percent":100}`,
		`{"job":"42","state":"downloading","percent":101}`,
		`{"job":"42","state":"downloading","percent":-1}`,
		`{"job":"42","state":"downloading","percent":1.5}`,
		`{"job":"42","state":"downloading","percent":1e1}`,
		`{"job":"42","state":"downloading","percent":07}`,
		`{"job":"42","state":"downloading","percent":"7"}`,
		`{"job":"42","attempt":12345678901,"state":"installing"}`,
		`{"job":"42","state":"installing","job":"43"}`,
		`{"Job":"42","state":"installing"}`,
		`{"job":"42","state":"installing","extra":{"a":[1,2]}}`,
		`{"job":"42","state":"installing","message":"caf\u00e9"}`,
		`{"job":"42","state":"failed","code":"install_failed","message":"a,b}c:d"}`,
		`{"job":"42","state":"failed","message":"no code"}`,
		`{"job":"42","state":"sleeping"}`,
		`{"job":null,"state":"installing"}`,
		`{ "job": "42", "state": "installing" }`,
		`{"job":"42","state":"installing"}}`,
		`{"job":"42","state":"installing"},`,
		`{"job":"42","state":"installing",}`,
		`{"job":"42" "state":"installing"}`,
		`{"job":"42","state":"installing"`,
		`{}`,
		`{"job":"-1","state":"installing"}`,
		`[1]`,
		``,
	}
	for _, m := range msgs {
		inputs = append(inputs, string(Encode(m)))
	}
	for _, in := range inputs {
		decodesAsEncodingJSON(t, []byte(in))
	}
}

// FuzzProgressByHandIsEncodingJSON: whatever a device sends, the hand-written
// reader of progress messages answers as encoding/json does.
func FuzzProgressByHandIsEncodingJSON(f *testing.F) {
	for _, s := range []string{
		`{"job":"42","attempt":1,"state":"downloading"}`,
		`{"job":"42","state":"downloading","percent":40}`,
		`{"job":"9","attempt":2,"state":"failed","code":"install_failed","message":"a \"b\" \u00e9"}`,
		`{"job":"42","state":"installing","job":"43"}`,
		`{ "job": "42", "state": "installing" }`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(decodesAsEncodingJSON)
}

func decodesAsEncodingJSON(t *testing.T, in []byte) {
	got, gotErr := DecodeProgress(in)
	want, wantErr := decode[Progress](in, MaxMessageSize)
	if !reflect.DeepEqual(got, want) || (gotErr == nil) != (wantErr == nil) {
		t.Errorf("DecodeProgress(%s) = %+v, %v; encoding/json: %+v, %v", in, got, gotErr, want, wantErr)
		return
	}
	if gotErr != nil && errorCode(gotErr) != errorCode(wantErr) {
		t.Errorf("DecodeProgress(%s): %v; encoding/json: %v", in, gotErr, wantErr)
	}
}

func errorCode(err error) string {
	if e, ok := err.(*Error); ok {
		return e.Code
	}
	return err.Error()
}

// BenchmarkProgress is a progress report's encoding and decoding, by hand
// and through encoding/json.
func BenchmarkProgress(b *testing.B) {
	m := Progress{Job: "123456", Attempt: 1, State: StateDownloading}
	in := Encode(m)
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = Encode(m)
		}
	})
	b.Run("encode-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal(m)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = DecodeProgress(in)
		}
	})
	b.Run("decode-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = decode[Progress](in, MaxMessageSize)
		}
	})
}

// FuzzProgressEncodeIsJSONMarshal: the hand-written encoder writes any
// progress message byte for byte as json.Marshal does.
func FuzzProgressEncodeIsJSONMarshal(f *testing.F) {
	f.Add("42", 1, "downloading", 40, "", "")
	f.Add("9", 0, "failed", 0, "install_failed", "a \"b\" <c> \u2028 \xff")
	f.Fuzz(func(t *testing.T, job string, attempt int, state string, percent int, code, message string) {
		m := Progress{Job: job, Attempt: attempt, State: State(state), Percent: percent, Code: code, Message: message}
		want, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := Encode(m); string(got) != string(want) {
			t.Errorf("Encode(%+v) = %s, want %s", m, got, want)
		}
	})
}
