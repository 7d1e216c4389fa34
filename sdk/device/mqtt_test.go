package device

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/otter-ota/otter/sdk/wire"
)

// startMosquitto runs a private Mosquitto on an ephemeral port and returns
// its URL; the test is skipped where Mosquitto is not installed, and fails
// there under CI=true, where it must run. The
// project's end-to-end tests run the SDK against otter's own broker; this
// one checks the MQTT transport against an independent broker.
func startMosquitto(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mosquitto is not installed, and CI=true requires this test to run (apt-get install mosquitto)")
		}
		t.Skip("mosquitto is not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	os.WriteFile(conf, []byte("listener "+port+" 127.0.0.1\nallow_anonymous true\npersistence false\n"), 0o600)
	cmd := exec.Command(bin, "-c", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, "mosquitto listens", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return "tcp://" + addr
}

// mqttServer plays otter's side on the broker: it answers every inform of
// the old version with the upgrade command, as the engine would.
type mqttServer struct {
	mu       sync.Mutex
	cm       *autopaho.ConnectionManager
	up       wire.Upgrade
	progress []wire.Progress
	informs  []map[string]string
}

func newMQTTServer(t *testing.T, broker string, up wire.Upgrade) *mqttServer {
	s := &mqttServer{up: up}
	u, _ := url.Parse(broker)
	ready := make(chan struct{})
	var once sync.Once
	cfg := autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 30, CleanStartOnInitialConnection: true,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			s.mu.Lock()
			s.cm = cm
			s.mu.Unlock()
			go func() {
				if _, err := cm.Subscribe(context.Background(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
					{Topic: wire.SubscriptionFilter(wire.KindInform), QoS: 1},
					{Topic: wire.SubscriptionFilter(wire.KindProgress), QoS: 1},
				}}); err == nil {
					once.Do(func() { close(ready) })
				}
			}()
		},
		ClientConfig: paho.ClientConfig{ClientID: "otter-test-server",
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){s.receive}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if _, err := autopaho.NewConnection(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	<-ready
	return s
}

func (s *mqttServer) receive(pr paho.PublishReceived) (bool, error) {
	p, d, kind, err := wire.ParseTopic(pr.Packet.Topic)
	if err != nil {
		return true, nil
	}
	m, err := wire.Decode(kind, pr.Packet.Payload)
	if err != nil {
		return true, fmt.Errorf("device sent a bad %s: %w", kind, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch m := m.(type) {
	case wire.Inform:
		s.informs = append(s.informs, m.Modules)
		if m.Modules["default"] != s.up.Version {
			go s.cm.Publish(context.Background(), &paho.Publish{QoS: 1,
				Topic: wire.Topic(p, d, wire.KindUpgrade), Payload: wire.Encode(s.up)})
		}
	case wire.Progress:
		s.progress = append(s.progress, m)
	}
	return true, nil
}

func (s *mqttServer) lastState() wire.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.progress) == 0 {
		return ""
	}
	return s.progress[len(s.progress)-1].State
}

func TestPushUpgradeOverMQTT(t *testing.T) {
	broker := startMosquitto(t)
	files := newFakeServer(t) // firmware downloads only
	up := files.firmware("42", "m.bin", "2.0.0", content(20_000))
	srv := newMQTTServer(t, broker, up)

	inst, rec := newMemInstaller("1.0.0"), &recorder{}
	cfg := testConfig(t, files, inst, rec, &sleeps{})
	cfg.Broker, cfg.HTTPBase, cfg.Sleep = broker, "", nil
	start(t, cfg)

	waitFor(t, "the upgrade succeeds over MQTT", func() bool { return rec.has(EventSucceeded, "42") })
	waitFor(t, "the server hears the new version", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.informs) >= 2 && srv.informs[len(srv.informs)-1]["default"] == "2.0.0"
	})
	if got := srv.lastState(); got != wire.StateRebooting {
		t.Errorf("last progress = %s, want rebooting", got)
	}
	if !rec.has(EventConnected, "") {
		t.Error("no connected event")
	}
}

func TestMQTTReconnectsAndInformsAgain(t *testing.T) {
	broker := startMosquitto(t)
	files := newFakeServer(t)
	srv := newMQTTServer(t, broker, wire.Upgrade{Version: "1.0.0"}) // nothing to push
	inst, rec := newMemInstaller("1.0.0"), &recorder{}
	cfg := testConfig(t, files, inst, rec, &sleeps{})
	cfg.Broker, cfg.HTTPBase, cfg.Sleep = broker, "", nil
	cfg.RetryBase = 10 * time.Millisecond
	c, _ := start(t, cfg)
	waitFor(t, "the first inform", func() bool { return rec.count(EventInformed) == 1 })
	c.tr.(*mqttTransport).cm.TerminateConnectionForTest()
	waitFor(t, "the inform after reconnecting", func() bool { return rec.count(EventInformed) == 2 })
	if rec.count(EventDisconnected) < 1 {
		t.Error("no disconnected event")
	}
	waitFor(t, "the server hears both informs", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.informs) >= 2
	})
}
