package bench

import (
	"context"
	"errors"
	"io"
	"runtime"
	"time"
)

// ConnectConfig describes a connection benchmark: many devices connected
// at once and idle.
type ConnectConfig struct {
	Server      ServerOptions
	Devices     int
	ConnectRate int
	// Idle is how long the devices stay connected before the measurement,
	// so that buffers grown while connecting can be returned.
	Idle     time.Duration
	Progress io.Writer
}

// ConnectReport is what a connection benchmark measured.
type ConnectReport struct {
	Devices        int           `json:"devices"`
	Database       string        `json:"database"`
	SeparateServer bool          `json:"separate_server"`
	Connect        time.Duration `json:"connect_ns"`
	// Provision, in cluster mode, is the time to create the devices
	// (through the API) and their broker accounts before they start (Connect
	// then counts from their start); 0 when the simulator creates them
	// as it starts (Connect includes it).
	Provision time.Duration `json:"provision_ns,omitempty"`
	// Accounts, in cluster mode, is how the broker accounts were made:
	// AccountsSeed or AccountsAPI. Seed, part of Provision with
	// AccountsSeed, is the time to write them into Mosquitto's file and
	// restart it and the replicas.
	Accounts string        `json:"accounts,omitempty"`
	Seed     time.Duration `json:"seed_ns,omitempty"`
	// BaseRSS is the server's resident memory before any device connected.
	BaseRSS int64 `json:"server_base_rss_bytes"`
	// RSS and PeakRSS are the server's resident memory with every device
	// connected and idle (VmRSS, VmHWM).
	RSS     int64 `json:"server_rss_bytes"`
	PeakRSS int64 `json:"server_peak_rss_bytes"`
	// PerDevice is (RSS - BaseRSS) / Devices.
	PerDevice int64 `json:"server_bytes_per_device"`
	// HeapInuse and Goroutines are the server's Go heap in use and its
	// goroutines with every device connected.
	HeapInuse int64 `json:"server_heap_inuse_bytes"`
	// StackInuse is the memory of goroutine stacks; HeapIdle is heap the
	// runtime holds without using it, HeapReleased the part of it
	// returned to the system (not in RSS).
	StackInuse   int64         `json:"server_stack_inuse_bytes"`
	HeapIdle     int64         `json:"server_heap_idle_bytes"`
	HeapReleased int64         `json:"server_heap_released_bytes"`
	Goroutines   int64         `json:"server_goroutines"`
	ServerFDs    int           `json:"server_open_files"`
	ServerCPU    time.Duration `json:"server_cpu_ns"`
	// Connected is what the broker counts (otter_mqtt_connected_clients;
	// the embedded broker only).
	Connected int64 `json:"broker_connected"`
	// Broker is "embedded" or "mosquitto"; Replicas the otter processes.
	// In cluster mode the server figures above are the sum over the
	// replicas, and the Broker* figures Mosquitto's process's.
	Broker   string `json:"broker"`
	Replicas int    `json:"replicas"`
	// BrokerBaseRSS and BrokerRSS are an external broker's resident
	// memory before any device connected and with all connected;
	// BrokerPerDevice is their difference over Devices.
	BrokerBaseRSS   int64         `json:"broker_base_rss_bytes,omitempty"`
	BrokerRSS       int64         `json:"broker_rss_bytes,omitempty"`
	BrokerPeakRSS   int64         `json:"broker_peak_rss_bytes,omitempty"`
	BrokerPerDevice int64         `json:"broker_bytes_per_device,omitempty"`
	BrokerCPU       time.Duration `json:"broker_cpu_ns,omitempty"`
	// In cluster mode the devices are created (with their broker
	// accounts) before any connects: AccountsRSS and BrokerAccountsRSS
	// are otter's and the broker's resident memory then (with
	// AccountsSeed, of the processes restarted on the seeded file), so that
	// PerConnection and BrokerPerConnection, (RSS - AccountsRSS) /
	// Devices, are what a connection adds.
	AccountsRSS         int64 `json:"server_accounts_rss_bytes,omitempty"`
	PerConnection       int64 `json:"server_bytes_per_connection,omitempty"`
	BrokerAccountsRSS   int64 `json:"broker_accounts_rss_bytes,omitempty"`
	BrokerPerConnection int64 `json:"broker_bytes_per_connection,omitempty"`
}

// RunConnect starts a server, connects Devices simulated devices and
// measures the server's memory with all of them idle.
func RunConnect(ctx context.Context, cfg ConnectConfig) (*ConnectReport, error) {
	if cfg.Devices <= 0 {
		return nil, errors.New("bench: connect needs at least one device")
	}
	r, err := newRig(ctx, cfg.Server, cfg.Devices, "", cfg.Progress)
	if err != nil {
		return nil, err
	}
	defer r.close()
	rep := &ConnectReport{Devices: cfg.Devices, Database: dbKind(cfg.Server.DBURL), SeparateServer: r.srv.Separate,
		Broker: brokerKind(cfg.Server), Replicas: replicaCount(cfg.Server)}
	base, err := r.srv.Usage()
	if err != nil {
		return nil, err
	}
	rep.BaseRSS = base.RSS
	if c := r.srv.cluster; c != nil {
		bu, err := ReadUsage(c.broker.PID())
		if err != nil {
			return nil, err
		}
		rep.BrokerBaseRSS = bu.RSS
		r.afterProvision = func() error {
			su, err := r.srv.Usage()
			if err != nil {
				return err
			}
			bu, err := ReadUsage(c.broker.PID())
			rep.AccountsRSS, rep.BrokerAccountsRSS = su.RSS, bu.RSS
			return err
		}
	}
	if rep.Connect, err = r.connect(ctx, cfg.Devices, cfg.ConnectRate); err != nil {
		return nil, err
	}
	rep.Provision, rep.Seed, rep.Accounts = r.provisioned, r.seeded, cfg.Server.AccountsPath()
	if cfg.Idle > 0 {
		r.say("idle for %s", cfg.Idle)
		if err := pause(ctx, cfg.Idle); err != nil {
			return nil, err
		}
	}
	if !r.srv.Separate {
		runtime.GC() // the devices' garbage is not the server's
	}
	return rep, r.measureIdle(ctx, rep)
}

func (r *rig) measureIdle(ctx context.Context, rep *ConnectReport) error {
	m, u, err := r.sample(ctx)
	if err != nil {
		return err
	}
	rep.RSS, rep.PeakRSS, rep.ServerFDs, rep.ServerCPU = u.RSS, u.PeakRSS, u.FDs, u.CPU
	rep.PerDevice = (u.RSS - rep.BaseRSS) / int64(rep.Devices)
	rep.HeapInuse = int64(m["go_memstats_heap_inuse_bytes"])
	rep.StackInuse = int64(m["go_memstats_stack_inuse_bytes"])
	rep.HeapIdle = int64(m["go_memstats_heap_idle_bytes"])
	rep.HeapReleased = int64(m["go_memstats_heap_released_bytes"])
	rep.Goroutines = int64(m["go_goroutines"])
	rep.Connected = int64(m["otter_mqtt_connected_clients"])
	if c := r.srv.cluster; c != nil {
		bu, err := ReadUsage(c.broker.PID())
		if err != nil {
			return err
		}
		rep.BrokerRSS, rep.BrokerPeakRSS, rep.BrokerCPU = bu.RSS, bu.PeakRSS, bu.CPU
		rep.BrokerPerDevice = (bu.RSS - rep.BrokerBaseRSS) / int64(rep.Devices)
		rep.BrokerPerConnection = (bu.RSS - rep.BrokerAccountsRSS) / int64(rep.Devices)
		rep.PerConnection = (u.RSS - rep.AccountsRSS) / int64(rep.Devices)
	}
	return nil
}
