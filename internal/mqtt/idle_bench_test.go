//go:build linux

package mqtt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	rtmetrics "runtime/metrics"
	"syscall"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"

	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/internal/store/storetest"
	"github.com/otter-ota/otter/internal/testcert"
	"github.com/otter-ota/otter/sdk/wire"
)

// idleDevices is how many devices BenchmarkIdleDevice connects: each is
// two open files in this process (the device's socket and the broker's).
const idleDevices = 2000

// idleWindow is how long BenchmarkIdleDevice watches the idle devices'
// allocations.
const idleWindow = 5 * time.Second

// BenchmarkIdleDevice measures what one idle connected device costs the
// broker's process, after three forced collections (so only live memory
// counts, not the collector's headroom): goroutines, goroutine stack bytes
// and live heap bytes per device, and what the process allocates per
// idle device and second (garbage: mochi's event loop). Each device does what a device of
// `otter bench connect` does: CONNECT (MQTT 3.1.1), SUBSCRIBE to its
// upgrade and reply topics, one QoS 1 PUBLISH (an inform), and it receives
// one QoS 1 message (so the client's write goroutine has written); then it
// stays idle. The devices are raw sockets driven with system calls, so
// they add neither goroutines nor heap to the figures.
//
//   - mochi: mochi alone, with otter's listener and options and mochi's
//     allow-all hook in place of otter's: what mochi itself costs.
//   - otter: otter's broker, with an in-memory credential lookup and an
//     engine that answers nothing.
//   - otter-sqlite: the same with the credential lookup in SQLite, which
//     runs on the connection's goroutine (does it grow the stack?).
//
// Run: go test ./internal/mqtt -run '^$' -bench IdleDevice -benchtime 1x
func BenchmarkIdleDevice(b *testing.B) {
	for _, tc := range []struct {
		name  string
		start func(b *testing.B) (dial func() (io.ReadWriteCloser, error), send func(i int))
	}{
		{"mochi", startMochiOnly},
		{"otter", func(b *testing.B) (func() (io.ReadWriteCloser, error), func(int)) {
			return startOtter(b, memCredentialsFor(b), false)
		}},
		{"otter-sqlite", func(b *testing.B) (func() (io.ReadWriteCloser, error), func(int)) {
			return startOtter(b, sqliteCredentials(b), false)
		}},
		{"otter-tls", func(b *testing.B) (func() (io.ReadWriteCloser, error), func(int)) {
			return startOtter(b, memCredentialsFor(b), true)
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				dial, send := tc.start(b)
				before := sampleIdle()
				conns := make([]io.Closer, 0, idleDevices)
				b.Cleanup(func() {
					for _, c := range conns {
						c.Close()
					}
				})
				for i := range idleDevices {
					c, err := dial()
					if err != nil {
						b.Fatalf("device %d: %v", i, err)
					}
					conns = append(conns, c)
					if err := idleDevice(c, i, send); err != nil {
						b.Fatalf("device %d: %v", i, err)
					}
				}
				after := sampleIdle()
				n := float64(idleDevices)
				// What the idle devices make the process allocate: garbage
				// that sets, at GOGC=100, how far the heap climbs between
				// collections (BENCHMARKS.md).
				var m1, m2 runtime.MemStats
				runtime.ReadMemStats(&m1)
				time.Sleep(idleWindow)
				runtime.ReadMemStats(&m2)
				b.ReportMetric(float64(m2.TotalAlloc-m1.TotalAlloc)/n/idleWindow.Seconds(), "idle-alloc-B/device/s")
				b.ReportMetric(float64(after.goroutines-before.goroutines)/n, "goroutines/device")
				b.ReportMetric(float64(after.stacks-before.stacks)/n, "stack-B/device")
				if tc.name == "otter-tls" {
					// The devices' own TLS state is heap of this process too.
					b.ReportMetric(float64(after.heap-before.heap)/n, "heap-with-device-tls-B/device")
				} else {
					b.ReportMetric(float64(after.heap-before.heap)/n, "heap-B/device")
				}
				b.ReportMetric(float64(after.startSize), "stack-start-B")
			}
		})
	}
}

type idleSample struct{ goroutines, stacks, heap, startSize uint64 }

// sampleIdle collects three times (a collection halves a stack at most
// once) and reads the live heap, the stacks and the goroutines.
func sampleIdle() idleSample {
	for range 3 {
		runtime.GC()
	}
	s := []rtmetrics.Sample{{Name: "/sched/goroutines:goroutines"}, {Name: "/memory/classes/heap/stacks:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/stack/starting-size:bytes"}}
	rtmetrics.Read(s)
	return idleSample{s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64(), s[3].Value.Uint64()}
}

// idleKey is the key of device i of product "p".
func idleKey(i int) string { return fmt.Sprintf("d%05d", i) }

// idleSecret is device i's secret (a benchmark needs no random ones).
func idleSecret(i int) string { return fmt.Sprintf("secret-%05d", i) }

// fdConn is a blocking socket driven with system calls: a device that
// adds no goroutine and no heap to this process.
type fdConn int

func dialFD(port int) (io.ReadWriteCloser, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	tv := syscall.Timeval{Sec: int64(waitTimeout.Seconds())}
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	if err := syscall.Connect(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return fdConn(fd), nil
}

func (c fdConn) Read(p []byte) (int, error) {
	for {
		n, err := syscall.Read(int(c), p)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 && len(p) > 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

func (c fdConn) Write(p []byte) (int, error) {
	written := 0
	for written < len(p) {
		n, err := syscall.Write(int(c), p[written:])
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return written, err
		}
		written += n
	}
	return written, nil
}

func (c fdConn) Close() error { return syscall.Close(int(c)) }

// idleDevice connects device i over rw, subscribes it, publishes its
// inform, makes send deliver it one message and acknowledges it; the
// connection is then left idle.
func idleDevice(rw io.ReadWriter, i int, send func(i int)) error {
	key := idleKey(i)
	body := append(mqttString("MQTT"), 4, 0xc2, 0x0e, 0x10) // level 4; user, password, clean; keepalive 3600 s
	body = append(body, mqttString("c-"+key)...)
	body = append(body, mqttString(wire.Username("p", key))...)
	body = append(body, mqttString(idleSecret(i))...)
	if _, err := rw.Write(packet(0x10, body)); err != nil {
		return err
	}
	if _, ack, err := expectPacket(rw, 0x20); err != nil || len(ack) != 2 || ack[1] != 0 {
		return fmt.Errorf("CONNACK %x: %v", ack, err)
	}
	sub := []byte{0, 1}
	for _, k := range []wire.Kind{wire.KindUpgrade, wire.KindReply} {
		sub = append(append(sub, mqttString(wire.Topic("p", key, k))...), 1)
	}
	if _, err := rw.Write(packet(0x82, sub)); err != nil {
		return err
	}
	if _, ack, err := expectPacket(rw, 0x90); err != nil || len(ack) != 4 || ack[2] != 1 || ack[3] != 1 {
		return fmt.Errorf("SUBACK %x: %v", ack, err)
	}
	pub := append(mqttString(wire.Topic("p", key, wire.KindInform)), 0, 2)
	pub = append(pub, wire.Encode(wire.Inform{Modules: map[string]string{"default": "1.0.0"}})...)
	if _, err := rw.Write(packet(0x32, pub)); err != nil {
		return err
	}
	if _, _, err := expectPacket(rw, 0x40); err != nil {
		return fmt.Errorf("PUBACK: %w", err)
	}
	send(i)
	typ, msg, err := expectPacket(rw, 0x30)
	if err != nil {
		return fmt.Errorf("the device's message: %w", err)
	}
	if typ&0x06 != 0x02 || len(msg) < 4 {
		return fmt.Errorf("PUBLISH 0x%02x %x: want QoS 1", typ, msg)
	}
	topicLen := int(msg[0])<<8 | int(msg[1])
	if len(msg) < 2+topicLen+2 {
		return fmt.Errorf("PUBLISH %x: too short", msg)
	}
	_, err = rw.Write(packet(0x40, msg[2+topicLen:2+topicLen+2]))
	return err
}

// expectPacket reads the next packet, which must be of type want (high
// nibble), byte by byte: the device keeps no buffer.
func expectPacket(r io.Reader, want byte) (byte, []byte, error) {
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, nil, err
	}
	typ := b[0]
	n, mult := 0, 1
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n += int(b[0]&0x7f) * mult
		mult *= 128
		if b[0]&0x80 == 0 {
			break
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	if typ&0xf0 != want {
		return typ, body, fmt.Errorf("got packet 0x%02x, want 0x%02x", typ, want)
	}
	return typ, body, nil
}

// startMochiOnly serves mochi with otter's listener and options but
// mochi's allow-all hook; send publishes through mochi's inline client.
func startMochiOnly(b *testing.B) (func() (io.ReadWriteCloser, error), func(int)) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	srv := mochi.New(serverOptions(log))
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		b.Fatal(err)
	}
	if err := srv.AddListener(newListener("tcp", ln, log, func(string) {})); err != nil {
		b.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	return func() (io.ReadWriteCloser, error) { return dialFD(port) }, func(i int) {
		if err := srv.Publish(wire.Topic("p", idleKey(i), wire.KindUpgrade), []byte(`{"job":"1"}`), false, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// startOtter serves otter's broker over creds, its devices connecting
// over TLS when useTLS; send sends the device an upgrade command.
func startOtter(b *testing.B, creds Credentials, useTLS bool) (func() (io.ReadWriteCloser, error), func(int)) {
	cfg := Config{Addr: "127.0.0.1:0", Devices: nopDevices{}, Credentials: creds}
	var pool *x509.CertPool
	if useTLS {
		cfg.TLSAddr = "127.0.0.1:0"
		cfg.TLSCertFile, cfg.TLSKeyFile, pool = testcert.Write(b, b.TempDir())
	}
	br, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { br.Close() })
	if err := br.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	dial := func() (io.ReadWriteCloser, error) { return dialFD(br.Addr().(*net.TCPAddr).Port) }
	if useTLS {
		dial = func() (io.ReadWriteCloser, error) {
			c, err := tls.Dial("tcp", br.TLSAddr().String(), &tls.Config{RootCAs: pool})
			if err != nil {
				return nil, err
			}
			return c, c.SetDeadline(time.Now().Add(waitTimeout))
		}
	}
	return dial, func(i int) {
		br.Send("p", idleKey(i), string(wire.KindUpgrade), []byte(`{"job":"1","attempt":1}`))
	}
}

// memCredentials are the idle devices' credentials, in a map.
type memCredentials map[string]ota.DeviceCredentials

func (m memCredentials) Credentials(_ context.Context, product, key string) (ota.DeviceCredentials, error) {
	c, ok := m[product+"/"+key]
	if !ok {
		return c, &ota.Error{Code: ota.ENOTFOUND, Message: "no such device"}
	}
	return c, nil
}

func memCredentialsFor(tb testing.TB) memCredentials {
	tb.Helper()
	m := make(memCredentials, idleDevices)
	for i := range idleDevices {
		m["p/"+idleKey(i)] = ota.DeviceCredentials{DeviceID: int64(i + 1), SecretHash: credential.Hash(idleSecret(i))}
	}
	return m
}

// sqliteCredentials stores the idle devices in a SQLite store.
func sqliteCredentials(b *testing.B) Credentials {
	st := storetest.Open(b)
	ctx := context.Background()
	if err := st.CreateProduct(ctx, &ota.Product{Key: "p", Name: "P"}); err != nil {
		b.Fatal(err)
	}
	news := make([]store.NewDevice, idleDevices)
	for i := range news {
		news[i] = store.NewDevice{Product: "p", Key: idleKey(i), SecretHash: credential.Hash(idleSecret(i))}
	}
	if _, err := st.CreateDevices(ctx, news); err != nil {
		b.Fatal(err)
	}
	return st
}

// nopDevices is an engine that takes every message and answers nothing.
type nopDevices struct{}

func (nopDevices) Connected(context.Context, engine.Device) error    { return nil }
func (nopDevices) Disconnected(context.Context, engine.Device) error { return nil }
func (nopDevices) Inform(context.Context, engine.Device, wire.Inform) (*engine.Answer, error) {
	return nil, nil
}
func (nopDevices) Request(context.Context, engine.Device, wire.Request) (*engine.Answer, error) {
	return nil, nil
}
func (nopDevices) Confirm(context.Context, engine.Device, wire.Confirm) (*engine.Answer, error) {
	return nil, nil
}
func (nopDevices) Progress(context.Context, engine.Device, wire.Progress) (*engine.Answer, error) {
	return nil, nil
}
func (nopDevices) Poll(context.Context, engine.Device) (*engine.Answer, error) { return nil, nil }
