package mqtt

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// The broker's log keeps mochi's warnings, without packets, and drops the
// warning mochi gives for every device that leaves with its will.
func TestMochiLogger(t *testing.T) {
	for _, c := range []struct {
		name string
		log  func(*slog.Logger)
		want string // "" when nothing may be written
	}{
		{"info is dropped", func(l *slog.Logger) { l.Info("client connected", "client", "d1") }, ""},
		{"a leave with the will is normal", func(l *slog.Logger) {
			l.Warn("error processing packet", "error", packets.CodeDisconnectWillMessage, "client", "d1", "pk", "x")
		}, ""},
		{"wrapped, too", func(l *slog.Logger) {
			l.Warn("error processing packet", "error", fmt.Errorf("read: %w", packets.CodeDisconnectWillMessage))
		}, ""},
		{"other errors stay, packets go", func(l *slog.Logger) {
			l.Warn("error processing packet", "error", packets.ErrProtocolViolation, "client", "d1", "pk", "secret-payload")
		}, "client=d1"},
		{"plain errors stay", func(l *slog.Logger) { l.Error("listener failed", "error", errors.New("accept: boom")) }, "accept: boom"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			c.log(mochiLogger(slog.New(slog.NewTextHandler(&buf, nil))))
			got := buf.String()
			switch {
			case c.want == "" && got != "":
				t.Errorf("wrote %q, want nothing", got)
			case c.want != "" && !strings.Contains(got, c.want):
				t.Errorf("wrote %q, want a line with %q", got, c.want)
			case strings.Contains(got, "secret-payload"):
				t.Errorf("wrote the packet: %q", got)
			}
		})
	}
}
