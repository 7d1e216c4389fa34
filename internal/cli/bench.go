package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/otter-ota/otter/internal/bench"
	"github.com/otter-ota/otter/internal/sim"
)

// benchCommand returns `otter bench`: measurements of a whole server on
// this machine, recorded in BENCHMARKS.md.
func (a *app) benchCommand() *cobra.Command {
	cmd := a.group("bench", "Measure a server on this machine with simulated devices",
		a.benchFleetCommand(), a.benchConnectCommand(), a.benchFailoverCommand(), a.benchJobsCommand(), a.benchServerCommand(), a.benchDevicesCommand(), a.benchListsCommand(), a.benchDownloadCommand())
	cmd.Long = `Measure otter on this machine. Each benchmark starts its own server on
ephemeral ports of 127.0.0.1 with a temporary data folder (SQLite unless
--db), so it needs no running server and leaves nothing behind. The server
runs in a process of its own (this binary, started again) so that its
memory and CPU time are measured apart from the simulated devices; with
--in-process it shares this process instead.

Progress goes to standard error; the result to standard output (-o json for
a JSON object).`
	return cmd
}

// benchServerFlags are the flags every server-starting benchmark shares.
type benchServerFlags struct {
	db, keep, cpuprofile, trace string
	inProcess                   bool
	connectRate                 int
}

func (f *benchServerFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.db, "db", "", "database URL: empty for SQLite in the data folder, postgres://... for PostgreSQL (a fresh schema, dropped after the run unless --keep)")
	fl.StringVar(&f.keep, "keep", "", "keep the server's data folder in `DIR` (new or empty) and the PostgreSQL schema")
	fl.StringVar(&f.cpuprofile, "cpuprofile", "", "write a CPU profile of the server to `FILE` (go tool pprof FILE); a separate server running a fleet writes the task's part to FILE.task")
	fl.StringVar(&f.trace, "trace", "", "write an execution trace of the server to `FILE` (go tool trace FILE): where it waits")
	fl.BoolVar(&f.inProcess, "in-process", false, "run the server in this process (its memory and CPU figures then include the devices)")
	fl.IntVar(&f.connectRate, "connect-rate", 2000, "new device connections per second")
}

// options turns the flags into server options.
func (f *benchServerFlags) options(stderr io.Writer) (bench.ServerOptions, error) {
	opts := bench.ServerOptions{DBURL: f.db, CPUProfile: f.cpuprofile, Trace: f.trace, Stderr: stderr}
	if f.keep != "" {
		if err := checkEmptyDir(f.keep); err != nil {
			return opts, err
		}
		opts.DataDir, opts.KeepSchema = f.keep, true
	}
	if f.connectRate <= 0 {
		return opts, usageErrorf("--connect-rate must be at least 1")
	}
	if f.inProcess {
		return opts, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return opts, fmt.Errorf("find this program to run the server in its own process (or use --in-process): %w", err)
	}
	opts.Executable = exe
	return opts, nil
}

// checkEmptyDir accepts a folder that does not exist or is empty: a
// benchmark on an old database would measure something else.
func checkEmptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return usageErrorf("--keep %s: %v", dir, err)
	}
	if len(entries) > 0 {
		return usageErrorf("--keep %s: the folder is not empty; give a new or empty folder", dir)
	}
	return nil
}

func (a *app) benchFleetCommand() *cobra.Command {
	var (
		sf           benchServerFlags
		cf           benchClusterFlags
		cfg          bench.FleetConfig
		size         string
		timeout      time.Duration
		downloadHTTP bool
	)
	cmd := &cobra.Command{
		Use:   "fleet --devices N",
		Short: "Upgrade N simulated devices with one push task and measure it",
		Long: `Start a server and N simulated devices (the device SDK over real MQTT
connections), create a product and a firmware of --file-size, wait until
every device has connected and reported its version, then create one push
task to all of them with no rate limit and measure: the time from the
task's creation until every job succeeded, devices upgraded and MQTT
messages handled per second, the time until each device got its upgrade
command (p50, p99), and the server's peak memory and CPU time.

With --broker mosquitto the devices connect to a private Mosquitto (the
dynamic security plugin, on a free port) and --replicas otter processes on
the --db PostgreSQL database serve them as a cluster, behind a load
balancer in this process that download URLs name; each replica's CPU time
and memory are shown, and the scheduling replica is marked. Unless
--single-node=false the same benchmark runs first on one otter process
with its embedded broker and the same database, and both are shown side
by side.

With --protocol enos the product accepts EnOS devices and the simulated
devices speak EnOS's device protocol (otter simulate --protocol enos), so
that the figures can be set beside those of a fleet on otter's protocol.`,
		Example: `  otter bench fleet --devices 1000
  otter bench fleet --devices 10000 --db postgres://postgres@127.0.0.1:5432/test --broker mosquitto --replicas 2
  otter bench fleet --devices 10000 --file-size 64KiB -o json
  otter bench fleet --devices 1000 --db postgres://postgres@127.0.0.1:5432/test
  otter bench fleet --devices 10000 --cpuprofile server.pprof
  otter bench fleet --devices 10000 --protocol enos`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := parseSize(size)
			if err != nil {
				return usageErrorf("--file-size: %v", err)
			}
			if cfg.Devices <= 0 {
				return usageErrorf("--devices must be at least 1")
			}
			if cfg.DevicesCPUProfile != "" && sf.inProcess {
				return usageErrorf("--devices-cpuprofile profiles this process, which --in-process shares with the server: use --cpuprofile alone")
			}
			if cfg.Protocol != sim.ProtocolOtter && cfg.Protocol != sim.ProtocolEnOS {
				return usageErrorf("--protocol %s: choose %s or %s", cfg.Protocol, sim.ProtocolOtter, sim.ProtocolEnOS)
			}
			if cfg.Server, err = sf.options(a.env.Stderr); err != nil {
				return err
			}
			if err := cf.apply(cmd, &cfg.Server, sf.inProcess); err != nil {
				return err
			}
			if downloadHTTP && cf.clustered() {
				return usageErrorf("--download-http is one server's listener: not with --broker mosquitto")
			}
			cfg.Server.DownloadHTTP = downloadHTTP
			cfg.FileSize, cfg.ConnectRate, cfg.Timeout, cfg.Progress = n, sf.connectRate, timeout, a.env.Stderr
			if cf.clustered() && cf.singleNode {
				return a.benchFleetBoth(cmd.Context(), cfg)
			}
			return a.benchFleet(cmd.Context(), cfg)
		},
	}
	sf.register(cmd)
	cf.register(cmd, 2)
	cmd.Flags().IntVar(&cfg.Devices, "devices", 1000, "number of simulated devices `N`")
	cmd.Flags().StringVar(&size, "file-size", "64KiB", "size `S` of the firmware file, e.g. 64KiB, 4MiB")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "give up when the task has not ended after `D`")
	cmd.Flags().StringVar(&cfg.Protocol, "protocol", sim.ProtocolOtter, "device protocol `P` of the simulated devices: otter, or enos (EnOS's)")
	cmd.Flags().BoolVar(&downloadHTTP, "download-http", false, "serve the downloads on the server's download listener (serve --download-http, fasthttp) instead of its --http listener (net/http, what serve does by default)")
	cmd.Flags().StringVar(&cfg.DevicesCPUProfile, "devices-cpuprofile", "", "each process of simulated devices writes a CPU profile of its whole run (connections included) to `FILE`.<segment> (go tool pprof otter FILE.*); not with --in-process")
	return cmd
}

// benchFleet runs the fleet benchmark and shows its report; jobs that did
// not succeed make the command fail after the report.
func (a *app) benchFleet(ctx context.Context, cfg bench.FleetConfig) error {
	rep, err := bench.RunFleet(ctx, cfg)
	if err != nil {
		return err
	}
	if err := a.render(rep, func(w io.Writer) error { return writeFields(w, fleetFields(rep)) }); err != nil {
		return err
	}
	return rep.Err()
}

// downloadListener names what served a fleet's downloads.
func downloadListener(own bool) string {
	if own {
		return "--download-http (fasthttp)"
	}
	return "--http (net/http)"
}

func fleetFields(r *bench.FleetReport) []field {
	f := []field{
		{"devices", strconv.Itoa(r.Devices)},
		{"device protocol", protocolName(r.Protocol)},
		{"firmware size", formatSize(r.FileSize)},
		{"database", r.Database},
		{"broker", r.Broker},
		{"otter processes", strconv.Itoa(r.Replicas)},
		{"downloads served by", downloadListener(r.DownloadHTTP)},
		{"server process", serverProcess(r.SeparateServer)},
		{"create devices and broker accounts", formatProvision(r.Provision, r.Accounts, r.Seed)},
		{"connect and inform", formatSeconds(r.Connect)},
		{"task: all succeeded after", formatSeconds(r.TaskTime)},
		{"succeeded / failed", fmt.Sprintf("%d / %d", r.Succeeded, r.Failed)},
		{"devices upgraded per second", fmt.Sprintf("%.0f", r.UpgradesPerSecond)},
		{"MQTT messages (up / down)", fmt.Sprintf("%d (%d / %d)%s", r.Uplinks+r.Downlinks, r.Uplinks, r.Downlinks, countedBy(r.MessagesCounted))},
		{"MQTT messages per second", fmt.Sprintf("%.0f", r.MessagesPerSecond)},
		{"upgrade command p50 / p99 / max", formatLatency(r.Upgrade)},
		{"succeeded p50 / p99 / max", formatLatency(r.Success)},
		{"server peak RSS", formatSize(r.ServerPeakRSS) + replicasSum(r.Replicas)},
		{"server RSS at the end", formatSize(r.ServerRSS) + replicasSum(r.Replicas)},
		{"server CPU (run / task)", formatSeconds(r.ServerCPU) + " / " + formatSeconds(r.ServerTaskCPU) + replicasSum(r.Replicas)},
		{"simulator CPU (task)", formatSeconds(r.SimulatorTaskCPU)},
		{"engine commits, mean time", fmt.Sprintf("%d, %s", r.Commits, formatMillis(r.CommitMean))},
		{"device message to ack, mean", ackMean(r)},
		{"downloads refused a slot (503)", strconv.FormatInt(r.DownloadsRefused, 10)},
		{"download credential lookups missed", strconv.FormatInt(r.CredentialMisses, 10)},
	}
	if r.Replicas > 1 || r.Broker == bench.BrokerMosquitto {
		f = append(f, processFields(r.Processes)...)
	}
	for _, code := range slices.Sorted(maps.Keys(r.Failures)) {
		fl := r.Failures[code]
		f = append(f, field{"failed: " + code, fmt.Sprintf("%d, e.g. %s", fl.Count, orDash(fl.Example))})
	}
	return f
}

func formatMillis(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func serverProcess(separate bool) string {
	if separate {
		return "separate (figures are the server's alone)"
	}
	return "shared with the devices (figures include them)"
}

func formatSeconds(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }

func formatLatency(l bench.Latency) string {
	if l.Count == 0 {
		return "-"
	}
	return fmt.Sprintf("%s / %s / %s (%d devices)", formatSeconds(l.P50), formatSeconds(l.P99), formatSeconds(l.Max), l.Count)
}

func (a *app) benchConnectCommand() *cobra.Command {
	var (
		sf  benchServerFlags
		cf  benchClusterFlags
		cfg bench.ConnectConfig
	)
	cmd := &cobra.Command{
		Use:   "connect --devices N",
		Short: "Connect N idle simulated devices and measure the server's memory",
		Long: `Start a server and N simulated devices, wait until every one has connected
and reported its version, let them idle for --idle, then report the
server's resident memory (VmRSS, and VmHWM, the peak) and its memory per
connected device. Each connection is an open file in the server and in the
simulator: the hard open-file limit of this machine (ulimit -n -H) bounds N.

With --broker mosquitto the devices connect to a private Mosquitto (the
dynamic security plugin, on a free port) and --replicas otter processes on
the --db PostgreSQL database are its clients: the server figures are then
otter's (summed over the replicas), which must not grow with the devices,
and Mosquitto's RSS and its RSS per device are shown beside them. Unless
--single-node=false the same benchmark runs first on one otter process
with its embedded broker and the same database, and both are shown side
by side.`,
		Example: `  otter bench connect --devices 10000
  otter bench connect --devices 10000 --db postgres://postgres@127.0.0.1:5432/test --broker mosquitto
  otter bench connect --devices 50000 -o json`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Devices <= 0 {
				return usageErrorf("--devices must be at least 1")
			}
			var err error
			if cfg.Server, err = sf.options(a.env.Stderr); err != nil {
				return err
			}
			if err := cf.apply(cmd, &cfg.Server, sf.inProcess); err != nil {
				return err
			}
			cfg.ConnectRate, cfg.Progress = sf.connectRate, a.env.Stderr
			if cf.clustered() && cf.singleNode {
				return a.benchConnectBoth(cmd.Context(), cfg)
			}
			rep, err := bench.RunConnect(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return a.render(rep, func(w io.Writer) error { return writeFields(w, connectFields(rep)) })
		},
	}
	sf.register(cmd)
	cf.register(cmd, 1)
	cmd.Flags().IntVar(&cfg.Devices, "devices", 10000, "number of simulated devices `N`")
	cmd.Flags().DurationVar(&cfg.Idle, "idle", 5*time.Second, "how long the devices idle before the measurement")
	return cmd
}

func connectFields(r *bench.ConnectReport) []field {
	f := []field{
		{"devices", strconv.Itoa(r.Devices)},
		{"database", r.Database},
		{"broker", r.Broker},
		{"otter processes", strconv.Itoa(r.Replicas)},
		{"server process", serverProcess(r.SeparateServer)},
		{"create devices and broker accounts", formatProvision(r.Provision, r.Accounts, r.Seed)},
		{"connect and inform", formatSeconds(r.Connect)},
		{"broker connections", brokerConnections(r)},
		{"server RSS before devices", formatSize(r.BaseRSS)},
		{"server RSS (VmRSS)", formatSize(r.RSS)},
		{"server peak RSS (VmHWM)", formatSize(r.PeakRSS)},
		{"server RSS per device", formatSize(r.PerDevice)},
		{"server Go heap in use", formatSize(r.HeapInuse)},
		{"server goroutine stacks", formatSize(r.StackInuse)},
		{"server heap idle (released)", formatSize(r.HeapIdle) + " (" + formatSize(r.HeapReleased) + ")"},
		{"server goroutines", strconv.FormatInt(r.Goroutines, 10)},
		{"server open files", strconv.Itoa(r.ServerFDs)},
		{"server CPU", formatSeconds(r.ServerCPU)},
	}
	if r.Broker == bench.BrokerMosquitto {
		f = append(f,
			field{"server RSS with the devices created, none connected", formatSize(r.AccountsRSS)},
			field{"server RSS per connection", formatSize(r.PerConnection)},
			field{"Mosquitto RSS before devices", formatSize(r.BrokerBaseRSS)},
			field{"Mosquitto RSS with their accounts, none connected", formatSize(r.BrokerAccountsRSS)},
			field{"Mosquitto RSS (VmRSS)", formatSize(r.BrokerRSS)},
			field{"Mosquitto peak RSS (VmHWM)", formatSize(r.BrokerPeakRSS)},
			field{"Mosquitto RSS per device (account + connection)", formatSize(r.BrokerPerDevice)},
			field{"Mosquitto RSS per connection", formatSize(r.BrokerPerConnection)},
			field{"Mosquitto CPU", formatSeconds(r.BrokerCPU)})
	}
	return f
}

// formatProvision shows the time to create the devices, when it was
// timed apart from connecting them, and how their broker accounts were
// made.
func formatProvision(d time.Duration, accounts string, seed time.Duration) string {
	switch {
	case d == 0:
		return "- (in connect and inform)"
	case accounts == bench.AccountsSeed:
		return fmt.Sprintf("%s (accounts seeded: written into Mosquitto's file, broker and replicas restarted in %s)", formatSeconds(d), formatSeconds(seed))
	case accounts == bench.AccountsAPI:
		return formatSeconds(d) + " (accounts made by otter through the plugin, one command each)"
	}
	return formatSeconds(d)
}

// countedBy says when the engine, not the broker, counted the messages.
func countedBy(source string) string {
	if source == "engine" {
		return ", counted by the engine"
	}
	return ""
}

// ackMean is the mean time to acknowledge a device message, which only
// the embedded broker measures.
func ackMean(r *bench.FleetReport) string {
	if r.MessagesCounted == "engine" {
		return "-"
	}
	return formatMillis(r.UplinkMean)
}

// brokerConnections is what the embedded broker counts; Mosquitto's
// count is not read.
func brokerConnections(r *bench.ConnectReport) string {
	if r.Broker == bench.BrokerMosquitto {
		return "-"
	}
	return strconv.FormatInt(r.Connected, 10)
}

// replicasSum marks a figure summed over several replicas.
func replicasSum(n int) string {
	if n > 1 {
		return fmt.Sprintf(" (sum of %d replicas)", n)
	}
	return ""
}

func (a *app) benchJobsCommand() *cobra.Command {
	var (
		cfg  bench.JobsConfig
		keep string
	)
	cmd := &cobra.Command{
		Use:   "jobs --jobs N",
		Short: "Measure how fast the engine starts jobs when only the database limits it",
		Long: `Create a product with N devices, all online, directly in the store; run the
rollout engine with a downlink that drops every message; create one push
task to all devices and measure how fast the engine moves its N jobs from
queued to notified. Nothing else runs: the database is the limit.`,
		Example: `  otter bench jobs --jobs 1000000
  otter bench jobs --jobs 1000000 --db postgres://postgres@127.0.0.1:5432/test?sslmode=disable`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Jobs <= 0 {
				return usageErrorf("--jobs must be at least 1")
			}
			if keep != "" {
				if err := checkEmptyDir(keep); err != nil {
					return err
				}
				cfg.DataDir, cfg.KeepSchema = keep, true
			}
			cfg.Progress = a.env.Stderr
			rep, err := bench.RunJobs(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return a.render(rep, func(w io.Writer) error { return writeFields(w, jobsFields(rep)) })
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&cfg.Jobs, "jobs", 1000000, "number of devices and jobs `N`")
	fl.StringVar(&cfg.DBURL, "db", "", "database URL: empty for SQLite in a temporary folder, postgres://... for PostgreSQL (a fresh schema)")
	fl.StringVar(&keep, "keep", "", "keep the SQLite database in `DIR` (new or empty) and the PostgreSQL schema")
	fl.IntVar(&cfg.BatchSize, "batch", 0, "the engine's batch size (default: the engine's)")
	fl.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of the task's creation and start to `FILE`")
	fl.DurationVar(&cfg.Timeout, "timeout", time.Hour, "give up when the jobs have not all started after `D`")
	fl.BoolVar(&cfg.CreateOnly, "create-only", false, "stop once the task is created (its start a day ahead): measure the creation alone")
	return cmd
}

func jobsFields(r *bench.JobsReport) []field {
	f := []field{
		{"jobs", strconv.Itoa(r.Jobs)},
		{"database", r.Database},
		{"setup: create devices", formatSeconds(r.CreateDevices)},
		{"setup: mark devices online", formatSeconds(r.MarkOnline)},
		{"create the task (jobs stored)", formatSeconds(r.CreateTask)},
		{"  CPU time", formatSeconds(r.CreateTaskCPU)},
	}
	if r.Database == "postgres" {
		f = append(f, field{"  PostgreSQL backends' CPU time", formatSeconds(r.CreateTaskDBCPU)})
	}
	if r.Start == 0 {
		return f // created only
	}
	f = append(f, []field{
		{"start every job", formatSeconds(r.Start)},
		{"  CPU time, per job", fmt.Sprintf("%s, %.1f µs", formatSeconds(r.StartCPU), float64(r.StartCPU.Microseconds())/float64(max(1, r.Jobs)))},
		{"jobs started per second", fmt.Sprintf("%.0f", r.JobsPerSecond)},
		{"  between 10% and 90%", fmt.Sprintf("%.0f", r.SteadyJobsPerSecond)},
		{"  first / last 10%", fmt.Sprintf("%.0f / %.0f", r.FirstTenth, r.LastTenth)},
		{"commits, mean time", fmt.Sprintf("%d, %s", r.Commits, formatMillis(r.CommitMean))},
	}...)
	if r.Database == "postgres" {
		f = append(f, field{"PostgreSQL backends' CPU time starting, per job", fmt.Sprintf("%s, %.1f µs",
			formatSeconds(r.StartDBCPU), float64(r.StartDBCPU.Microseconds())/float64(max(1, r.Jobs)))})
	}
	return f
}

// benchServerCommand is the server side of a benchmark in its own
// process; the other bench commands start it.
func (a *app) benchServerCommand() *cobra.Command {
	var cfg bench.ServeConfig
	cmd := &cobra.Command{
		Use:    "server",
		Short:  "Run a server for a benchmark (started by the other bench commands)",
		Hidden: true,
		Args:   needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.AdminToken, cfg.Log = a.env.Getenv("OTTER_ADMIN_TOKEN"), a.env.Stderr
			if cfg.DataDir == "" || cfg.AdminToken == "" {
				return usageErrorf("bench server needs --data and OTTER_ADMIN_TOKEN (it is started by the other bench commands)")
			}
			return bench.Serve(cmd.Context(), cfg, a.env.Stdout)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.DataDir, "data", "", "data folder")
	fl.StringVar(&cfg.DBURL, "db", "", "database URL")
	fl.StringVar(&cfg.MQTTAddr, "mqtt", "127.0.0.1:0", "MQTT listen address")
	fl.StringVar(&cfg.CPUProfile, "cpuprofile", "", "CPU profile file")
	fl.StringVar(&cfg.Trace, "trace", "", "execution trace file")
	fl.StringVar(&cfg.Broker, "broker", "", "external MQTT broker URL (a cluster replica)")
	fl.StringVar(&cfg.BrokerAdmin, "broker-admin", "", "broker account admin (dynsec)")
	fl.StringVar(&cfg.BrokerClientID, "broker-client-id", "", "the scheduling replica's client id at the broker")
	fl.StringVar(&cfg.PublicURL, "public-url", "", "base URL in download URLs")
	fl.BoolVar(&cfg.DownloadHTTP, "download-http", false, "serve downloads on a listener of their own (127.0.0.1:0)")
	return cmd
}

// benchDevicesCommand runs part of a benchmark's simulated fleet in a
// process of its own; the other bench commands start it.
func (a *app) benchDevicesCommand() *cobra.Command {
	var cfg bench.DevicesConfig
	cmd := &cobra.Command{
		Use:    "devices",
		Short:  "Run simulated devices for a benchmark (started by the other bench commands)",
		Hidden: true,
		Args:   needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Server, cfg.Token = a.server, a.tokenValue()
			if cfg.Server == "" || cfg.Broker == "" || cfg.Token == "" || cfg.Devices <= 0 {
				return usageErrorf("bench devices needs --server, --broker, --devices and OTTER_TOKEN (it is started by the other bench commands)")
			}
			return bench.RunDevices(cmd.Context(), cfg, a.env.Stdout)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.Broker, "broker", "", "MQTT broker URL")
	fl.StringVar(&cfg.PublicKey, "public-key", "", "the server's signing key (base64)")
	fl.StringVar(&cfg.Product, "product", "bench", "product")
	fl.StringVar(&cfg.Prefix, "prefix", "bench-", "device key prefix")
	fl.StringVar(&cfg.Version, "version", "1.0.0", "version the devices start on")
	fl.IntVar(&cfg.Devices, "devices", 0, "number of devices")
	fl.IntVar(&cfg.ConnectRate, "connect-rate", 2000, "new connections per second")
	fl.StringVar(&cfg.Secrets, "secrets", "", "file of the devices' secrets (key,secret), made by the bench")
	fl.StringVar(&cfg.Protocol, "protocol", sim.ProtocolOtter, "device protocol")
	fl.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of this process to `FILE`")
	return cmd
}

func (a *app) benchListsCommand() *cobra.Command {
	var (
		cfg         bench.ListsConfig
		inProcess   bool
		keep, reuse string
	)
	cmd := &cobra.Command{
		Use:   "lists --rows N",
		Short: "Measure the lists the console and the API serve at N devices, jobs and events",
		Long: `Create a product with N devices, a paused task with N jobs (one in ten
succeeded, one in a thousand failed) and N events, directly in the store;
start a server on that database (in a process of its own unless
--in-process), mark every other device online, and read the task's status
and pages of 100 of every list (a task's jobs with and without state
filters, devices, events) through the REST API over HTTP, from --readers
concurrent readers with kept-alive connections, from the first page and
from pages deep in the list. Each request is timed from its sending until
its response body is read; shows p50, p99, max and the server process's
CPU time per request. Before timing, each reader reads every page once,
untimed (unless --cold), so that the server's database connections are
as warm as a serving server's. With --while-starting the task is resumed and the
server's engine starts its queued jobs at full speed while the readers
read. On PostgreSQL on this host, it also shows the CPU time per request
of the database's processes that serve the server.`,
		Example: `  otter bench lists --rows 1000000
  otter bench lists --rows 1000000 --while-starting
  otter bench lists --rows 1000000 --db postgres://postgres@127.0.0.1:5432/test?sslmode=disable`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Rows <= 0 {
				return usageErrorf("--rows must be at least 1")
			}
			if cfg.Readers <= 0 || cfg.Requests <= 0 {
				return usageErrorf("--readers and --requests must be at least 1")
			}
			switch {
			case keep != "" && reuse != "":
				return usageErrorf("--keep and --reuse do not go together (a reused database is kept)")
			case keep != "":
				if err := checkEmptyDir(keep); err != nil {
					return err
				}
				cfg.DataDir, cfg.KeepSchema = keep, true
			case reuse != "":
				cfg.DataDir, cfg.Reuse = reuse, true
			}
			if !inProcess {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("find this program to run the server in its own process (or use --in-process): %w", err)
				}
				cfg.Executable = exe
			}
			cfg.Progress = a.env.Stderr
			rep, err := bench.RunLists(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return a.render(rep, func(w io.Writer) error { return writeFields(w, listsFields(rep)) })
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&cfg.Rows, "rows", 1000000, "number of devices, jobs and events `N`")
	fl.StringVar(&cfg.DBURL, "db", "", "database URL: empty for SQLite in a temporary folder, postgres://... for PostgreSQL (a fresh schema)")
	fl.IntVar(&cfg.Readers, "readers", 8, "concurrent readers `R`")
	fl.IntVar(&cfg.Requests, "requests", 50, "pages each reader reads of each list `N`")
	fl.BoolVar(&cfg.WhileStarting, "while-starting", false, "read while the engine starts the task's jobs at full speed")
	fl.BoolVar(&cfg.Cold, "cold", false, "time the first read of each list on each of the server's database connections too (no untimed read of every page first)")
	fl.BoolVar(&inProcess, "in-process", false, "run the server in this process (its CPU figures then include the readers)")
	fl.StringVar(&keep, "keep", "", "keep the SQLite database in `DIR` (new or empty) and the PostgreSQL schema")
	fl.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of the server during the reads to `FILE` (go tool pprof FILE)")
	fl.StringVar(&reuse, "reuse", "", "read the database that a --keep `DIR` run of as many --rows left (its folder; on PostgreSQL with the same --db) instead of seeding one")
	return cmd
}

func listsServerProcess(separate bool) string {
	if separate {
		return "separate (CPU figures are the server's alone)"
	}
	return "this process (CPU figures include the readers)"
}

func listsFields(r *bench.ListsReport) []field {
	out := []field{{"rows", strconv.Itoa(r.Rows)}, {"database", r.Database}, {"readers", strconv.Itoa(r.Readers)},
		{"server process", listsServerProcess(r.SeparateServer)}, {"latency", "HTTP request until its response body is read"}}
	if r.WhileStarting {
		out = append(out, field{"engine", fmt.Sprintf("started %d jobs while the readers read, %.0f a second; waited %.1f s of the %.1f s for reads in flight",
			r.JobsStarted, r.JobsPerSecond, r.EngineYield, r.ReadSeconds)})
		if r.EngineCPUPerJob > 0 {
			out = append(out, field{"engine CPU", fmt.Sprintf("%s a job started, alone just before the reads; \"engine\" below is its estimated share of each list's server CPU",
				r.EngineCPUPerJob.Round(100*time.Nanosecond))})
		}
	}
	for _, l := range r.Lists {
		v := fmt.Sprintf("p50 %s, p99 %s, max %s, server CPU %s a request", l.Latency.P50.Round(10*time.Microsecond),
			l.Latency.P99.Round(10*time.Microsecond), l.Latency.Max.Round(10*time.Microsecond), l.CPU.Round(10*time.Microsecond))
		if l.EngineCPU > 0 {
			v += fmt.Sprintf(" (engine %s)", l.EngineCPU.Round(10*time.Microsecond))
		}
		if l.DBCPU > 0 {
			v += fmt.Sprintf(", PostgreSQL CPU %s a request", l.DBCPU.Round(10*time.Microsecond))
		}
		out = append(out, field{l.Name, v})
	}
	return out
}
