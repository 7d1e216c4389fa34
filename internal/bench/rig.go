package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/brokeradmin"
	"github.com/otter-ota/otter/internal/sim"
)

// rig is a server under measurement, an admin client, the benchmark's
// product and, once connected, its simulated devices.
type rig struct {
	srv      *Server
	api      *client.Client
	devs     *devices
	progress io.Writer
	// executable runs the devices in processes of their own when set.
	executable string
	perProcess int
	tempDir    string
	// provisioned is how long creating the devices took, when it is
	// timed apart from connecting them (cluster mode); afterProvision
	// runs then, before any device starts.
	provisioned    time.Duration
	afterProvision func() error
	// seeded, part of provisioned, is how long writing the accounts into
	// Mosquitto's file and restarting it and the replicas took
	// (AccountsSeed).
	seeded time.Duration
	// checked is how long Sync took to confirm the seeded accounts; it is
	// left out of provisioned.
	checked    time.Duration
	secretsDir string
	// protocol is the device protocol of the benchmark's devices.
	protocol string
	// devicesProfile, when set, names the CPU profiles of the devices'
	// processes (deviceConfig.CPUProfile).
	devicesProfile string
}

// fdMargin is the open files a process needs beside its device
// connections: listeners, the database, downloads, logs.
const fdMargin = 256

// newRig checks that this machine can hold the connections, starts the
// server and creates the benchmark's product, for devices of protocol
// (empty: otter's).
func newRig(ctx context.Context, opts ServerOptions, devices int, protocol string, progress io.Writer) (*rig, error) {
	limit, err := checkFileLimit(devices, opts.Executable != "")
	if err != nil {
		return nil, err
	}
	ports, err := EphemeralPorts()
	if err != nil {
		return nil, err
	}
	if devices > perAddress(ports) && opts.MQTTAddr == "" {
		// Devices beyond one address's ports connect to 127.0.0.2, ...
		opts.MQTTAddr = "0.0.0.0:0"
	}
	r := &rig{progress: progress, executable: opts.Executable, perProcess: devicesPerProcess(limit), protocol: protocol}
	if r.tempDir, err = deviceTempDir(); err != nil {
		return nil, err
	}
	r.say("starting the server (separate process: %t)", opts.Executable != "")
	if r.srv, err = StartServer(ctx, opts); err != nil {
		r.close()
		return nil, err
	}
	r.api = client.New(r.srv.HTTPURL, r.srv.Token, client.WithUserAgent("otter-bench"))
	if _, err := r.api.CreateProduct(ctx, benchProductCreate(protocol)); err != nil {
		r.close()
		return nil, fmt.Errorf("create the product: %w", err)
	}
	return r, nil
}

// deviceTempDir makes a folder in /dev/shm, when there is one, for the
// simulated devices' downloads: the SDK writes each download to a file
// and syncs it, and on the server's disk those writes would compete with
// the database's.
func deviceTempDir() (string, error) {
	if fi, err := os.Stat("/dev/shm"); err != nil || !fi.IsDir() {
		return "", nil
	}
	dir, err := os.MkdirTemp("/dev/shm", "otter-bench-devices-")
	if err != nil {
		return "", fmt.Errorf("make a folder for the devices' downloads: %w", err)
	}
	return dir, nil
}

// perAddress is how many devices connect to one broker address: the
// ephemeral ports, less a tenth for downloads and sockets in TIME_WAIT.
func perAddress(ports int) int { return ports * 9 / 10 }

// devicesPerProcess is how many simulated devices one process holds: each
// has a connection and, while it downloads, a file open; downloads share
// downloadConns connections.
func devicesPerProcess(limit uint64) int { return max(1, (int(limit)-fdMargin-downloadConns)/2) }

// checkFileLimit refuses a fleet the server's process cannot hold (each
// connection is an open file), and returns the open-file limit. With the
// server in this process, the devices must fit here too.
func checkFileLimit(devices int, separate bool) (uint64, error) {
	limit, err := RaiseFileLimit()
	if err != nil {
		return 0, err
	}
	need := uint64(devices + fdMargin)
	if !separate {
		need += 2*uint64(devices) + downloadConns // the devices' connections and downloads
	}
	if need > limit {
		most := int(limit) - fdMargin
		if !separate {
			most /= 3
		}
		return limit, fmt.Errorf("%d devices need about %d open files in the server's process, but this machine allows %d (the hard limit, `ulimit -n -H`): "+
			"raise it where otter starts (as root: `ulimit -Hn 1048576`, or LimitNOFILE= in a systemd unit), or run at most --devices %d",
			devices, need, limit, max(most, 0))
	}
	return limit, nil
}

// connect starts n devices and waits until every one has connected and
// reported its version; it returns how long that took.
func (r *rig) connect(ctx context.Context, n, rate int) (time.Duration, error) {
	key, err := r.api.SigningKey(ctx)
	if err != nil {
		return 0, fmt.Errorf("read the signing key: %w", err)
	}
	ports, err := EphemeralPorts()
	if err != nil {
		return 0, err
	}
	r.say("starting %d simulated devices (protocol %s)", n, r.devicesProtocol())
	t0 := time.Now()
	cfg := deviceConfig{
		API: r.api, Token: r.srv.Token, Broker: r.srv.MQTTURL, PublicKey: key.PublicKey, Product: benchProduct,
		Devices: n, Version: "1.0.0", PerAddress: perAddress(ports), ConnectRate: rate,
		Executable: r.executable, PerProcess: r.perProcess, TempDir: r.tempDir, Progress: r.progress,
		Protocol: r.protocol, CPUProfile: r.devicesProfile,
	}
	if r.srv.cluster != nil {
		// Each device's broker account is a command to Mosquitto, which
		// saves its whole account file after each: creating the fleet
		// takes longer than connecting it, and is timed apart.
		if cfg.SecretsDir, err = os.MkdirTemp("", "otter-bench-secrets-"); err != nil {
			return 0, err
		}
		r.secretsDir = cfg.SecretsDir
		cfg.AccountsLater = r.srv.cluster.seed
		cfg.Provisioned = func(accounts []brokeradmin.Want) error {
			if cfg.AccountsLater {
				if err := r.seed(ctx, accounts); err != nil {
					return err
				}
			}
			if r.afterProvision != nil {
				return r.afterProvision()
			}
			return nil
		}
	}
	r.devs, err = startDevices(ctx, cfg)
	if err != nil {
		return 0, err
	}
	if r.srv.cluster != nil {
		r.provisioned = time.Since(t0) - r.checked
		t0 = time.Now()
	}
	r.say("devices run in %d process(es)", len(r.devs.parts))
	if err := r.waitInformed(ctx, n); err != nil {
		return 0, err
	}
	d := time.Since(t0)
	after := ""
	if r.provisioned > 0 {
		after = " (after their creation)"
	}
	r.say("%d devices connected and informed in %s%s", n, d.Round(time.Millisecond), after)
	return d, nil
}

// seed writes the accounts into the cluster's Mosquitto and restarts it
// and the replicas.
func (r *rig) seed(ctx context.Context, accounts []brokeradmin.Want) error {
	c := r.srv.cluster
	r.say("writing %d broker accounts into Mosquitto's dynamic security file; restarting it and the replicas, these with --broker-admin", len(accounts))
	t0 := time.Now()
	if err := c.seedAccounts(ctx, accounts); err != nil {
		return fmt.Errorf("seed the broker accounts: %w", err)
	}
	r.seeded = time.Since(t0)
	r.srv.PID = c.replicas[0].pid()
	r.say("accounts seeded, broker and replicas restarted in %s", r.seeded.Round(time.Millisecond))
	t0 = time.Now()
	if err := c.checkSeeded(ctx, accounts); err != nil {
		return err
	}
	r.checked = time.Since(t0)
	r.say("otter broker sync's check: nothing to change (%s, left out of the creation's time)", r.checked.Round(time.Millisecond))
	return nil
}

// waitInformed waits until n devices have reported their versions, for at
// most a minute after the last change.
func (r *rig) waitInformed(ctx context.Context, n int) error {
	last, lastChange := -1, time.Now()
	for {
		connected, informed := r.devs.counts()
		if informed >= n {
			return nil
		}
		if informed != last {
			last, lastChange = informed, time.Now()
		}
		if time.Since(lastChange) > time.Minute {
			return fmt.Errorf("only %d of %d devices connected (%d informed) and none more for a minute", connected, n, informed)
		}
		if err := r.devs.err(); err != nil {
			return err
		}
		if err := pause(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

func (r *rig) say(format string, args ...any) {
	say(r.progress, format, args...)
}

// close stops the devices, then the server.
func (r *rig) close() {
	if r.devs != nil {
		r.say("stopping the devices")
		r.devs.stop()
	}
	if r.srv != nil {
		r.say("stopping the server")
		if err := r.srv.Close(); err != nil {
			r.say("stopping the server: %v", err)
		}
	}
	if r.tempDir != "" {
		_ = os.RemoveAll(r.tempDir)
	}
	if r.secretsDir != "" {
		_ = os.RemoveAll(r.secretsDir)
	}
}

// devicesProtocol names the devices' protocol.
func (r *rig) devicesProtocol() string {
	if r.protocol == "" {
		return sim.ProtocolOtter
	}
	return r.protocol
}

// benchProductCreate is the benchmark's product, open to EnOS devices
// when they speak EnOS's protocol.
func benchProductCreate(protocol string) client.ProductCreate {
	p := client.ProductCreate{Key: benchProduct, Name: "Benchmark"}
	if protocol == sim.ProtocolEnOS {
		p.Protocol = protocol
	}
	return p
}
