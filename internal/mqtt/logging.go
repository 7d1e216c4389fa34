package mqtt

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// mochiLogger is the logger mochi writes to: the broker's, from warn up
// (mochi logs every connection at info), without packets (mochi attaches
// whole packets, payloads included, to some lines).
func mochiLogger(log *slog.Logger) *slog.Logger {
	return slog.New(&quietHandler{next: log.Handler()}).With("component", "mochi")
}

// quietHandler drops records below warn and attributes that hold packets.
type quietHandler struct{ next slog.Handler }

func (h *quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && h.next.Enabled(ctx, l)
}

func (h *quietHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	normal := false
	r.Attrs(func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok && errors.Is(err, packets.CodeDisconnectWillMessage) {
			// mochi warns of every device leaving with its will (reason
			// 0x04), which the protocol asks for: one line per device of
			// a fleet that goes offline, and nothing wrong.
			normal = true
		}
		if !packetAttr(a.Key) {
			out.AddAttrs(a)
		}
		return true
	})
	if normal {
		return nil
	}
	return h.next.Handle(ctx, out)
}

func (h *quietHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	kept := make([]slog.Attr, 0, len(attrs))
	for _, a := range attrs {
		if !packetAttr(a.Key) {
			kept = append(kept, a)
		}
	}
	return &quietHandler{next: h.next.WithAttrs(kept)}
}

func (h *quietHandler) WithGroup(name string) slog.Handler {
	return &quietHandler{next: h.next.WithGroup(name)}
}

func packetAttr(key string) bool { return key == "pk" || key == "packet" }

// logInterval is the least time between two log lines of one kind (per
// connection, or per broker for what every device may hit at once), so
// that a misbehaving device or an outage cannot flood the log.
const logInterval = 10 * time.Second
