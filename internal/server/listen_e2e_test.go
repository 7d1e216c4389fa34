package server_test

import (
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/otter-ota/otter/internal/server"
	"github.com/otter-ota/otter/internal/store/storetest"
)

// A taken --http or --mqtt address stops the start with a message naming
// the flag and suggesting another address: not the one that is taken.
func TestTakenAddressSuggestsAnother(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	for _, tt := range []struct {
		flag       string
		http, mqtt string
	}{
		{"--http", addr, "127.0.0.1:0"},
		{"--mqtt", "127.0.0.1:0", addr},
	} {
		s, err := server.Start(t.Context(), server.Config{
			DataDir: t.TempDir(), HTTPAddr: tt.http, MQTTAddr: tt.mqtt, DBURL: storetest.URL(t), Logger: slog.New(slog.DiscardHandler),
		})
		if err == nil {
			s.Close()
			t.Fatalf("%s on a taken address: started", tt.flag)
		}
		msg := err.Error()
		if !strings.Contains(msg, "already in use") || !strings.Contains(msg, "choose another address with "+tt.flag) {
			t.Errorf("%s taken: %v, want the flag named", tt.flag, msg)
		}
		if !strings.Contains(msg, "(for example "+tt.flag+" 127.0.0.1:") || strings.Contains(msg, "(for example "+tt.flag+" "+addr+")") {
			t.Errorf("%s taken: %v, want another address of the same host as the example", tt.flag, msg)
		}
	}
}
