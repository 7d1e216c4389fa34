package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/sim"
)

// FleetConfig describes a fleet benchmark: one push task to every device.
type FleetConfig struct {
	Server ServerOptions
	// Devices is the number of simulated devices.
	Devices int
	// FileSize is the size of the firmware file in bytes.
	FileSize int64
	// ConnectRate bounds new device connections per second; 0 means the
	// simulator's default.
	ConnectRate int
	// Timeout bounds the task, from its creation until every job ended.
	Timeout time.Duration
	// Protocol is the device protocol of the fleet: sim.ProtocolOtter
	// (empty) or sim.ProtocolEnOS.
	Protocol string
	// Progress, when set, receives a line about each stage.
	Progress io.Writer
	// DevicesCPUProfile, when set, is the name each process of simulated
	// devices writes a CPU profile of its whole run under, followed by
	// "." and its segment.
	DevicesCPUProfile string
}

// FleetReport is what a fleet benchmark measured.
type FleetReport struct {
	Devices int `json:"devices"`
	// Protocol is the device protocol the fleet spoke.
	Protocol string `json:"protocol"`
	FileSize int64  `json:"file_size_bytes"`
	Database string `json:"database"`
	// SeparateServer says the server ran in a process of its own: its
	// memory and CPU figures are then the server's alone.
	SeparateServer bool `json:"separate_server"`
	// Broker is "embedded" or "mosquitto"; Replicas the otter processes
	// (1 with the embedded broker).
	Broker   string `json:"broker"`
	Replicas int    `json:"replicas"`
	// DownloadHTTP says the downloads went to the server's download
	// listener (serve --download-http, fasthttp), not its --http one.
	DownloadHTTP bool `json:"download_http"`
	// Connect is the time to start, connect and hear from every device.
	Connect time.Duration `json:"connect_ns"`
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
	// TaskTime runs from the request that created the task until the task
	// is completed (every job succeeded).
	TaskTime  time.Duration `json:"task_ns"`
	Succeeded int64         `json:"succeeded"`
	Failed    int64         `json:"failed"`
	// Failures counts the failures devices saw, by code.
	Failures map[string]Failure `json:"failures,omitempty"`
	// UpgradesPerSecond is Succeeded over TaskTime.
	UpgradesPerSecond float64 `json:"upgrades_per_second"`
	// Uplinks and Downlinks count MQTT messages the server handled during
	// the task (otter_mqtt_uplinks_total, otter_mqtt_downlinks_total).
	// In cluster mode the external broker's client counts nothing: they
	// are the engine's device messages applied and commands sent
	// (otter_engine_device_messages_total, otter_engine_downlinks_total)
	// and MessagesCounted says "engine".
	MessagesCounted   string  `json:"messages_counted"`
	Uplinks           int64   `json:"mqtt_uplinks"`
	Downlinks         int64   `json:"mqtt_downlinks"`
	MessagesPerSecond float64 `json:"mqtt_messages_per_second"`
	// Upgrade is the time from the task's creation to each device's
	// receiving its upgrade command, measured on the device.
	Upgrade Latency `json:"upgrade_latency"`
	// Success is the time from the task's creation to each device's
	// running the new version.
	Success Latency `json:"success_latency"`
	// Processes is each server process's use (each replica's and the
	// broker's in cluster mode). The Server figures below are the sum over
	// the replicas.
	Processes []ProcessUse `json:"processes"`
	// Server is the server process's use: Peak over the whole run, CPU
	// over the whole run and during the task.
	ServerPeakRSS int64         `json:"server_peak_rss_bytes"`
	ServerRSS     int64         `json:"server_rss_bytes"`
	ServerCPU     time.Duration `json:"server_cpu_ns"`
	ServerTaskCPU time.Duration `json:"server_task_cpu_ns"`
	// SimulatorTaskCPU is the CPU time of the devices' processes during
	// the task (the server's too, when it is not separate).
	SimulatorTaskCPU time.Duration `json:"simulator_task_cpu_ns"`
	// Server internals during the task: the engine's commits (batches
	// written) and their mean time, and the mean time from a device
	// message to its acknowledgement.
	Commits    int64         `json:"engine_commits"`
	CommitMean time.Duration `json:"engine_commit_mean_ns"`
	UplinkMean time.Duration `json:"uplink_ack_mean_ns"`
	// DownloadsRefused counts the downloads answered 503 during the task
	// (every download slot taken: the device waits the Retry-After), and
	// CredentialMisses the downloads whose device's credentials were read
	// from the store rather than the cache.
	DownloadsRefused int64 `json:"downloads_refused"`
	CredentialMisses int64 `json:"download_credential_misses"`
}

// ProcessUse is what one process of the server used.
type ProcessUse struct {
	Name string `json:"name"`
	// Scheduling says this replica ran the rollout engine at the end.
	Scheduling bool          `json:"scheduling,omitempty"`
	PeakRSS    int64         `json:"peak_rss_bytes"`
	RSS        int64         `json:"rss_bytes"`
	CPU        time.Duration `json:"cpu_ns"`
	TaskCPU    time.Duration `json:"task_cpu_ns"`
}

// Failure is how many jobs failed with one code, with one device's error.
type Failure struct {
	Count   int    `json:"count"`
	Example string `json:"example,omitempty"`
}

// Latency summarizes a set of durations.
type Latency struct {
	Count int           `json:"count"`
	P50   time.Duration `json:"p50_ns"`
	P99   time.Duration `json:"p99_ns"`
	Max   time.Duration `json:"max_ns"`
}

// latency summarizes sorted durations.
func latency(sorted []time.Duration) Latency {
	if len(sorted) == 0 {
		return Latency{}
	}
	at := func(q float64) time.Duration { return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))] }
	return Latency{Count: len(sorted), P50: at(0.50), P99: at(0.99), Max: sorted[len(sorted)-1]}
}

// benchProduct is the product the benchmarks create.
const benchProduct = "bench"

// RunFleet starts a server and a simulated fleet, runs one push task to
// every device with no rate limit, and measures it.
func RunFleet(ctx context.Context, cfg FleetConfig) (*FleetReport, error) {
	if cfg.Devices <= 0 || cfg.FileSize <= 0 {
		return nil, errors.New("bench: the fleet needs at least one device and a firmware file of at least one byte")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	if cfg.Protocol == "" {
		cfg.Protocol = sim.ProtocolOtter
	}
	if cfg.Protocol != sim.ProtocolOtter && cfg.Server.clustered() {
		return nil, fmt.Errorf("bench: --protocol %s needs the embedded broker: cluster mode does not take EnOS logins (docs/protocol-enos.md)", cfg.Protocol)
	}
	r, err := newRig(ctx, cfg.Server, cfg.Devices, cfg.Protocol, cfg.Progress)
	if err != nil {
		return nil, err
	}
	defer r.close()
	r.devicesProfile = cfg.DevicesCPUProfile
	rep := &FleetReport{Devices: cfg.Devices, Protocol: cfg.Protocol, FileSize: cfg.FileSize, Database: dbKind(cfg.Server.DBURL), SeparateServer: r.srv.Separate,
		Broker: brokerKind(cfg.Server), Replicas: replicaCount(cfg.Server), DownloadHTTP: cfg.Server.DownloadHTTP}
	fw, err := r.firmware(ctx, "2.0.0", cfg.FileSize)
	if err != nil {
		return nil, err
	}
	if rep.Connect, err = r.connect(ctx, cfg.Devices, cfg.ConnectRate); err != nil {
		return nil, err
	}
	rep.Provision, rep.Seed, rep.Accounts = r.provisioned, r.seeded, cfg.Server.AccountsPath()
	if err := r.runTask(ctx, fw, cfg.Timeout, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// runTask creates the push task, waits for it to complete and fills in
// the measurements.
func (r *rig) runTask(ctx context.Context, fw *client.Firmware, timeout time.Duration, rep *FleetReport) error {
	before, err := r.snapshot(ctx)
	if err != nil {
		return err
	}
	if err := r.srv.ProfileTask(); err != nil {
		return fmt.Errorf("profile the task: %w", err)
	}
	r.say("creating a push task to %d devices", rep.Devices)
	t0 := time.Now()
	task, err := r.api.CreateTask(ctx, client.TaskCreate{Name: "bench", FirmwareID: fw.ID, Mode: client.ModePush, Target: client.Target{All: true}})
	if err != nil {
		return fmt.Errorf("create the task: %w", err)
	}
	done, err := r.waitTask(ctx, task.ID, timeout)
	if err != nil {
		return err
	}
	rep.TaskTime = time.Since(t0)
	after, err := r.snapshot(ctx)
	if err != nil {
		return err
	}
	rep.Succeeded, rep.Failed = done.Counts[client.JobSucceeded], done.Counts[client.JobFailed]
	r.awaitDeviceSuccesses(ctx, int(rep.Succeeded))
	rep.Failures = r.devs.failureCounts()
	rep.Upgrade = latency(r.devs.since(r.devs.upgrade, t0))
	rep.Success = latency(r.devs.since(r.devs.succeeded, t0))
	rep.measured(before, after)
	rep.Processes = processUses(before, after, r.scheduling(ctx))
	if done.State != client.TaskCompleted {
		return fmt.Errorf("the task ended %s with %v: want it completed", done.State, done.Counts)
	}
	return nil
}

// awaitDeviceSuccesses gives the devices' own success events, which come
// in from their processes, up to ten seconds to catch up with the n jobs
// the server counts succeeded: a device learns that its report was stored
// after the server does, and the latencies are those of the devices'
// events, stamped when they happened, not when they arrived.
func (r *rig) awaitDeviceSuccesses(ctx context.Context, n int) {
	deadline := time.Now().Add(10 * time.Second)
	for r.devs.succeededCount() < n && time.Now().Before(deadline) {
		if pause(ctx, 20*time.Millisecond) != nil {
			return
		}
	}
}

// snapshot is what the server and the devices had used at one time.
type snapshot struct {
	metrics   Metrics
	server    Usage
	simulator time.Duration // CPU
	// processes is each of the server's processes' use, by name.
	processes []namedUsage
}

type namedUsage struct {
	Process
	Usage
}

func (r *rig) snapshot(ctx context.Context) (snapshot, error) {
	m, u, err := r.sample(ctx)
	if err != nil {
		return snapshot{}, err
	}
	var procs []namedUsage
	for _, p := range r.srv.Processes() {
		pu, err := ReadUsage(p.PID)
		if err != nil {
			return snapshot{}, err
		}
		procs = append(procs, namedUsage{p, pu})
	}
	cpu, err := r.devs.cpu()
	return snapshot{metrics: m, server: u, simulator: cpu, processes: procs}, err
}

// processUses pairs each process's use at two snapshots; scheduling is
// the URL of the replica that schedules.
func processUses(before, after snapshot, scheduling string) []ProcessUse {
	var out []ProcessUse
	for _, a := range after.processes {
		pu := ProcessUse{Name: a.Name, Scheduling: a.Replica && a.URL == scheduling, PeakRSS: a.PeakRSS, RSS: a.RSS, CPU: a.CPU, TaskCPU: a.CPU}
		for _, b := range before.processes {
			if b.PID == a.PID {
				pu.TaskCPU = a.CPU - b.CPU
			}
		}
		out = append(out, pu)
	}
	return out
}

// scheduling returns the URL of the replica that schedules, as the
// servers say; "" when they do not answer.
func (r *rig) scheduling(ctx context.Context) string {
	if r.srv.cluster == nil {
		return r.srv.HTTPURL
	}
	info, err := r.api.ServerInfo(ctx)
	if err != nil {
		return ""
	}
	for _, rep := range info.Replicas {
		if rep.Scheduling && !rep.Gone {
			return rep.URL
		}
	}
	return ""
}

func brokerKind(o ServerOptions) string {
	if o.clustered() {
		return BrokerMosquitto
	}
	return BrokerEmbedded
}

func replicaCount(o ServerOptions) int {
	if o.clustered() {
		return o.Replicas
	}
	return 1
}

// measured fills in the rates and the use of the server and the devices
// between two snapshots around the task.
func (rep *FleetReport) measured(before, after snapshot) {
	b, a := before.metrics, after.metrics
	rep.UpgradesPerSecond = float64(rep.Succeeded) / rep.TaskTime.Seconds()
	up, down := "otter_mqtt_uplinks_total", "otter_mqtt_downlinks_total"
	rep.MessagesCounted = "broker"
	if _, ok := a[up]; !ok {
		up, down = "otter_engine_device_messages_total", "otter_engine_downlinks_total"
		rep.MessagesCounted = "engine"
	}
	rep.Uplinks = int64(a[up] - b[up])
	rep.Downlinks = int64(a[down] - b[down])
	rep.MessagesPerSecond = float64(rep.Uplinks+rep.Downlinks) / rep.TaskTime.Seconds()
	rep.ServerPeakRSS, rep.ServerRSS, rep.ServerCPU = after.server.PeakRSS, after.server.RSS, after.server.CPU
	rep.ServerTaskCPU = after.server.CPU - before.server.CPU
	rep.SimulatorTaskCPU = after.simulator - before.simulator
	rep.Commits, rep.CommitMean = histogram(b, a, "otter_engine_commit_seconds")
	_, rep.UplinkMean = histogram(b, a, "otter_mqtt_uplink_seconds")
	refused, missed := `otter_download_requests_total{status="503"}`, `otter_device_credential_lookups_total{result="miss"}`
	rep.DownloadsRefused = int64(a[refused] - b[refused])
	rep.CredentialMisses = int64(a[missed] - b[missed])
}

// Err describes the jobs that did not succeed, or is nil when all did.
func (r *FleetReport) Err() error {
	if r.Succeeded == int64(r.Devices) {
		return nil
	}
	return fmt.Errorf("%d of %d jobs did not succeed (%d failed): see the failures above", int64(r.Devices)-r.Succeeded, r.Devices, r.Failed)
}

// waitTask polls the task until it ends.
func (r *rig) waitTask(ctx context.Context, id int64, timeout time.Duration) (*client.Task, error) {
	deadline := time.Now().Add(timeout)
	for {
		t, err := r.api.Task(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("read the task: %w", err)
		}
		if t.State.Terminal() {
			return t, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the task has not ended after %s: jobs %v", timeout, t.Counts)
		}
		if err := r.devs.err(); err != nil {
			return nil, err
		}
		if err := pause(ctx, 50*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// sample reads the server's metrics and its process's use.
func (r *rig) sample(ctx context.Context) (Metrics, Usage, error) {
	m, err := r.srv.Scrape(ctx)
	if err != nil {
		return nil, Usage{}, err
	}
	u, err := r.srv.Usage()
	return m, u, err
}

// firmware uploads a random file of size bytes as version.
func (r *rig) firmware(ctx context.Context, version string, size int64) (*client.Firmware, error) {
	image := make([]byte, size)
	_, _ = rand.Read(image)
	fw, err := r.api.UploadFirmware(ctx, client.FirmwareUpload{Product: benchProduct, Version: version, Size: size}, bytes.NewReader(image))
	if err != nil {
		return nil, fmt.Errorf("upload the firmware: %w", err)
	}
	return fw, nil
}

// histogram returns how many observations a histogram gained between two
// scrapes, and their mean.
func histogram(before, after Metrics, name string) (int64, time.Duration) {
	n := after[name+"_count"] - before[name+"_count"]
	if n <= 0 {
		return 0, 0
	}
	sum := after[name+"_sum"] - before[name+"_sum"]
	return int64(n), time.Duration(sum / n * float64(time.Second))
}

func dbKind(url string) string {
	if url == "" {
		return "sqlite"
	}
	return "postgres"
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
