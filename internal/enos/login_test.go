package enos_test

import (
	"errors"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/enos"
)

// Signatures computed apart (Python's hashlib) from the rule of EnOS's
// SDKs: digest("clientId{c}deviceKey{d}productKey{p}timestamp{t}" + secret).
func TestLoginVerify(t *testing.T) {
	const secret = "s3cret"
	tests := []struct {
		name, clientID, username, password string
		ok                                 bool
	}{
		{"sha256 upper (Node SDK)", "d1|securemode=2,signmethod=sha256,timestamp=1764566400123|", "d1&p1",
			"059A202D326437BA60F1AB02097D5EA68D9EFFC6060C5CAD9D546ABCD769EA76", true},
		{"sha256 lower (Java SDK)", "d1|securemode=2,signmethod=sha256,timestamp=1764566400123|", "d1&p1",
			"059a202d326437ba60f1ab02097d5ea68d9effc6060c5cad9d546abcd769ea76", true},
		{"hmacsha256 is a plain digest (Python SDK)", "d1|securemode=2,signmethod=hmacsha256,timestamp=1764566400123.456|", "d1&p1",
			"b80d9fffdb42ca7bad705776d006cd52e609215cb79cf1e4680de563ec089001", true},
		{"md5", "d1|securemode=2,signmethod=md5,timestamp=1764566400123|", "d1&p1", "e399217135158f65afe9ad63e44f25b1", true},
		{"sha1 upper", "d1|securemode=2,signmethod=sha1,timestamp=1764566400123|", "d1&p1", "459CDC2061176917A3B0E556FD81E1EF8D1A5E57", true},
		{"wrong secret", "d1|securemode=2,signmethod=sha256,timestamp=1764566400123|", "d1&p1",
			"159A202D326437BA60F1AB02097D5EA68D9EFFC6060C5CAD9D546ABCD769EA76", false},
		{"another timestamp than signed", "d1|securemode=2,signmethod=sha256,timestamp=1764566400124|", "d1&p1",
			"059A202D326437BA60F1AB02097D5EA68D9EFFC6060C5CAD9D546ABCD769EA76", false},
		{"md5 digest under sha256", "d1|securemode=2,signmethod=sha256,timestamp=1764566400123|", "d1&p1", "e399217135158f65afe9ad63e44f25b1", false},
		{"empty password", "d1|securemode=2,signmethod=sha256,timestamp=1764566400123|", "d1&p1", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := enos.ParseLogin(tt.clientID, tt.username)
			if err != nil {
				t.Fatal(err)
			}
			if got := l.Verify(tt.password, secret); got != tt.ok {
				t.Errorf("Verify = %v, want %v (signature %s)", got, tt.ok, l.Sign(secret))
			}
		})
	}
}

func TestParseLogin(t *testing.T) {
	l, err := enos.ParseLogin("mac-01|securemode=2,signmethod=SHA256,timestamp=1764566400123.5|", "dev-1&prod.a")
	if err != nil {
		t.Fatal(err)
	}
	want := enos.Login{ClientID: "mac-01", SecureMode: "2", SignMethod: "sha256", Timestamp: "1764566400123.5", Product: "prod.a", Device: "dev-1"}
	if l != want {
		t.Fatalf("ParseLogin = %+v, want %+v", l, want)
	}
	if at, _ := l.Time(); !at.Equal(time.UnixMilli(1764566400123)) {
		t.Errorf("Time = %v", at)
	}
	for _, tt := range []struct{ name, clientID, username string }{
		{"otter user name", "d|securemode=2,signmethod=sha256,timestamp=1|", "p/d"},
		{"bad device key", "d|securemode=2,signmethod=sha256,timestamp=1|", "a b&p"},
		{"empty product", "d|securemode=2,signmethod=sha256,timestamp=1|", "d&"},
		{"no params", "d", "d&p"},
		{"empty client id", "|securemode=2,signmethod=sha256,timestamp=1|", "d&p"},
		{"dynamic activation", "d|securemode=3,signmethod=sha256,timestamp=1|", "d&p"},
		{"no securemode", "d|signmethod=sha256,timestamp=1|", "d&p"},
		{"unknown signmethod", "d|securemode=2,signmethod=crc32,timestamp=1|", "d&p"},
		{"no timestamp", "d|securemode=2,signmethod=sha256|", "d&p"},
		{"timestamp not a number", "d|securemode=2,signmethod=sha256,timestamp=soon|", "d&p"},
		{"negative timestamp", "d|securemode=2,signmethod=sha256,timestamp=-5|", "d&p"},
		{"bad fraction", "d|securemode=2,signmethod=sha256,timestamp=12.3x|", "d&p"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var le *enos.LoginError
			if _, err := enos.ParseLogin(tt.clientID, tt.username); !errors.As(err, &le) {
				t.Errorf("ParseLogin(%q, %q) error %v, want a *LoginError", tt.clientID, tt.username, err)
			}
		})
	}
}

func TestIsLogin(t *testing.T) {
	if !enos.IsLogin("d&p") || enos.IsLogin("p/d") {
		t.Error("IsLogin tells the user names apart wrongly")
	}
}

func FuzzParseLogin(f *testing.F) {
	f.Add("d1|securemode=2,signmethod=sha256,timestamp=1764566400123|", "d1&p1", "059A")
	f.Add("x|securemode=2,signmethod=hmacmd5,timestamp=1.2|", "a&b", "")
	f.Fuzz(func(t *testing.T, clientID, username, password string) {
		l, err := enos.ParseLogin(clientID, username)
		if err != nil {
			return
		}
		if l.Sign("s") == "" {
			t.Fatalf("a parsed login %+v has no sign method", l)
		}
		if !l.Verify(l.Sign("s"), "s") {
			t.Fatal("a login does not verify its own signature")
		}
		if _, err := l.Time(); err != nil {
			t.Fatalf("a parsed login has an unreadable time: %v", err)
		}
	})
}
