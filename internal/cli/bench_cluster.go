package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/otter-ota/otter/internal/bench"
)

// benchClusterFlags select cluster mode for fleet and connect: a private
// Mosquitto and N replicas, optionally after the single-node run.
type benchClusterFlags struct {
	broker     string
	replicas   int
	singleNode bool
	accounts   string
}

func (f *benchClusterFlags) register(cmd *cobra.Command, replicas int) {
	fl := cmd.Flags()
	fl.StringVar(&f.broker, "broker", bench.BrokerEmbedded, "`BROKER` the devices connect to: embedded (one otter process) or mosquitto (cluster mode: a private Mosquitto with the dynamic security plugin on a free port, --replicas otter processes on the --db PostgreSQL, a load balancer in front of them)")
	fl.IntVar(&f.replicas, "replicas", replicas, "otter replicas `N` with --broker mosquitto")
	registerAccounts(fl, &f.accounts)
	fl.BoolVar(&f.singleNode, "single-node", true, "with --broker mosquitto, first run the same benchmark on one otter process with its embedded broker (same database) and show both side by side; --single-node=false runs the cluster only")
}

// apply checks the flags and sets cluster mode in opts.
func (f *benchClusterFlags) apply(cmd *cobra.Command, opts *bench.ServerOptions, inProcess bool) error {
	switch f.broker {
	case bench.BrokerEmbedded, "":
		if cmd.Flags().Changed("replicas") {
			return usageErrorf("--replicas needs --broker mosquitto: the embedded broker runs in one otter process")
		}
		if cmd.Flags().Changed("accounts") {
			return usageErrorf("--accounts needs --broker mosquitto: the embedded broker takes devices from the registry")
		}
		return nil
	case bench.BrokerMosquitto:
	default:
		return usageErrorf("--broker %q: want embedded or mosquitto", f.broker)
	}
	switch {
	case f.replicas < 1:
		return usageErrorf("--replicas must be at least 1")
	case !isPostgresURL(opts.DBURL):
		return usageErrorf("--broker mosquitto needs --db postgres://...: the replicas share one PostgreSQL database")
	case inProcess:
		return usageErrorf("--broker mosquitto runs each replica in a process of its own: drop --in-process")
	case opts.CPUProfile != "" || opts.Trace != "":
		return usageErrorf("--cpuprofile and --trace profile one server: not with --broker mosquitto")
	}
	if err := checkAccounts(f.accounts); err != nil {
		return err
	}
	opts.Broker, opts.Replicas, opts.Accounts = bench.BrokerMosquitto, f.replicas, f.accounts
	return nil
}

// registerAccounts adds --accounts, how a cluster benchmark makes the
// devices' broker accounts.
func registerAccounts(fl *pflag.FlagSet, accounts *string) {
	fl.StringVar(accounts, "accounts", bench.AccountsSeed, "`HOW` the devices' broker accounts are made with --broker mosquitto: seed (the replicas create the devices without accounts, "+
		"every account is then written into Mosquitto's dynamic security file and Mosquitto and the replicas restart) or api (otter creates each account as it creates the device, as in production; "+
		"the plugin rewrites its whole file after each, so this takes time quadratic in the devices, about a minute for 1,000)")
}

func checkAccounts(accounts string) error {
	if accounts != bench.AccountsSeed && accounts != bench.AccountsAPI {
		return usageErrorf("--accounts %q: want %s or %s", accounts, bench.AccountsSeed, bench.AccountsAPI)
	}
	return nil
}

func isPostgresURL(u string) bool {
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

// executable is this program, which runs the servers of a benchmark.
func executable() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find this program to run the servers in processes of their own: %w", err)
	}
	return exe, nil
}

// clustered says cluster mode was asked for.
func (f *benchClusterFlags) clustered() bool { return f.broker == bench.BrokerMosquitto }

// single returns the options of the single-node run beside a cluster run:
// the same, with the embedded broker in one process.
func single(opts bench.ServerOptions) bench.ServerOptions {
	opts.Broker, opts.Replicas = bench.BrokerEmbedded, 0
	return opts
}

// sideBySide is the JSON of a single-node run beside a cluster run.
type sideBySide[R any] struct {
	SingleNode R `json:"single_node"`
	Cluster    R `json:"cluster"`
}

// writeColumns shows objects side by side: one row per field name, in the
// order they first appear, "-" where an object lacks it.
func writeColumns(w io.Writer, headers []string, cols ...[]field) error {
	var names []string
	values := make([]map[string]string, len(cols))
	seen := map[string]bool{}
	for i, col := range cols {
		values[i] = map[string]string{}
		for _, f := range col {
			values[i][f.name] = f.value
			if !seen[f.name] {
				seen[f.name] = true
				names = append(names, f.name)
			}
		}
	}
	t := newTable(w, append([]string{""}, headers...)...)
	for _, n := range names {
		row := []string{n}
		for i := range cols {
			v, ok := values[i][n]
			if !ok {
				v = "-"
			}
			row = append(row, v)
		}
		t.row(row...)
	}
	return t.flush()
}

func columnHeader(broker string, replicas int) string {
	if broker == bench.BrokerMosquitto {
		return fmt.Sprintf("cluster (mosquitto, %d replica%s)", replicas, plural(replicas))
	}
	return "single node (embedded broker)"
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// processFields shows each server process's use.
func processFields(procs []bench.ProcessUse) []field {
	var out []field
	for _, p := range procs {
		name := p.Name
		if p.Scheduling && p.Name != "server" {
			name += " (scheduling)"
		}
		out = append(out, field{"CPU task / run, peak RSS: " + name,
			fmt.Sprintf("%s / %s, %s", formatSeconds(p.TaskCPU), formatSeconds(p.CPU), formatSize(p.PeakRSS))})
	}
	return out
}

// benchFleetBoth runs the fleet benchmark on one node, then in cluster
// mode, and shows both.
func (a *app) benchFleetBoth(ctx context.Context, cfg bench.FleetConfig) error {
	one := cfg
	one.Server = single(cfg.Server)
	say(a.env.Stderr, "single node first: one otter process with its embedded broker")
	r1, err := bench.RunFleet(ctx, one)
	if err != nil {
		return fmt.Errorf("the single-node run: %w", err)
	}
	say(a.env.Stderr, "then the cluster: Mosquitto and %d replicas", cfg.Server.Replicas)
	r2, err := bench.RunFleet(ctx, cfg)
	if err != nil {
		return fmt.Errorf("the cluster run: %w", err)
	}
	err = a.render(sideBySide[*bench.FleetReport]{r1, r2}, func(w io.Writer) error {
		return writeColumns(w, []string{columnHeader(r1.Broker, r1.Replicas), columnHeader(r2.Broker, r2.Replicas)}, fleetFields(r1), fleetFields(r2))
	})
	if err != nil {
		return err
	}
	if err := r1.Err(); err != nil {
		return fmt.Errorf("single node: %w", err)
	}
	return r2.Err()
}

// benchConnectBoth runs the connection benchmark on one node, then in
// cluster mode, and shows both.
func (a *app) benchConnectBoth(ctx context.Context, cfg bench.ConnectConfig) error {
	one := cfg
	one.Server = single(cfg.Server)
	say(a.env.Stderr, "single node first: one otter process with its embedded broker")
	r1, err := bench.RunConnect(ctx, one)
	if err != nil {
		return fmt.Errorf("the single-node run: %w", err)
	}
	say(a.env.Stderr, "then the cluster: Mosquitto and %d replica%s", cfg.Server.Replicas, plural(cfg.Server.Replicas))
	r2, err := bench.RunConnect(ctx, cfg)
	if err != nil {
		return fmt.Errorf("the cluster run: %w", err)
	}
	return a.render(sideBySide[*bench.ConnectReport]{r1, r2}, func(w io.Writer) error {
		return writeColumns(w, []string{columnHeader(r1.Broker, r1.Replicas), columnHeader(r2.Broker, r2.Replicas)}, connectFields(r1), connectFields(r2))
	})
}

func say(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func (a *app) benchFailoverCommand() *cobra.Command {
	var (
		cfg         bench.FailoverConfig
		db, keep    string
		size        string
		accounts    string
		connectRate int
	)
	cmd := &cobra.Command{
		Use:   "failover --db postgres://... --runs N",
		Short: "Kill the scheduling replica of a cluster during rollouts and measure the takeover",
		Long: `Start otter in cluster mode on this machine: a private Mosquitto with the
dynamic security plugin on a free port, --replicas otter processes on a
fresh schema of the --db PostgreSQL database, sharing one data folder, and
a load balancer in this process in front of them (download URLs name it).
Connect --devices simulated devices to Mosquitto, then --runs times: push a
new firmware to every device with a rate limit of --rate jobs a minute,
kill the scheduling replica with SIGKILL once --kill-after jobs have
started, and measure the time from the kill until

  - another replica took the lead (its scheduling_since, GET /api/v1/server),
  - the first job started by it: the earliest started_at, read from the
    task's jobs through the API, of the jobs started after the kill (the
    killed process starts none). started_at is the engine's time for the
    batch that started the job, on this machine's clock.

Each run waits for its task to end (every job must succeed) and starts the
killed replica again, as a follower. Shows min / median / max over the runs.`,
		Example: `  otter bench failover --db 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable' --runs 10
  otter bench failover --db 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable' --runs 3 --devices 200 -o json`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := parseSize(size)
			if err != nil {
				return usageErrorf("--file-size: %v", err)
			}
			if !isPostgresURL(db) {
				return usageErrorf("--db postgres://... is needed: the replicas share one PostgreSQL database")
			}
			if connectRate <= 0 {
				return usageErrorf("--connect-rate must be at least 1")
			}
			if err := checkAccounts(accounts); err != nil {
				return err
			}
			cfg.Server = bench.ServerOptions{DBURL: db, Stderr: a.env.Stderr, Broker: bench.BrokerMosquitto, Replicas: cfg.Server.Replicas, Accounts: accounts}
			if keep != "" {
				if err := checkEmptyDir(keep); err != nil {
					return err
				}
				cfg.Server.DataDir, cfg.Server.KeepSchema = keep, true
			}
			cfg.FileSize, cfg.ConnectRate, cfg.Progress = n, connectRate, a.env.Stderr
			if err := bench.CheckFailover(cfg); err != nil {
				return usageErrorf("%v", err)
			}
			if cfg.Server.Executable, err = executable(); err != nil {
				return err
			}
			rep, err := bench.RunFailover(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if err := a.render(rep, func(w io.Writer) error { return writeFailover(w, rep) }); err != nil {
				return err
			}
			return rep.Err()
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&db, "db", "", "PostgreSQL URL (a fresh schema, dropped after the run unless --keep)")
	fl.StringVar(&keep, "keep", "", "keep the replicas' data folder in `DIR` (new or empty) and the PostgreSQL schema")
	fl.IntVar(&cfg.Server.Replicas, "replicas", 3, "otter replicas `N` (at least 2)")
	registerAccounts(fl, &accounts)
	fl.IntVar(&cfg.Devices, "devices", 200, "number of simulated devices `N`")
	fl.IntVar(&cfg.Runs, "runs", 10, "rollouts, each with one kill `N`")
	fl.IntVar(&cfg.Rate, "rate", 600, "the task's rate limit, jobs started per minute `R`: the rollout must outlast the takeover")
	fl.IntVar(&cfg.KillAfter, "kill-after", 0, "kill the scheduler once `N` jobs have started (default: a tenth of the devices)")
	fl.StringVar(&size, "file-size", "64KiB", "size `S` of the firmware file")
	fl.IntVar(&connectRate, "connect-rate", 2000, "new device connections per second")
	fl.DurationVar(&cfg.Timeout, "timeout", 10*time.Minute, "give up on a run whose task has not ended after `D`")
	return cmd
}

func writeFailover(w io.Writer, r *bench.FailoverReport) error {
	fields := []field{
		{"devices", strconv.Itoa(r.Devices)},
		{"replicas", strconv.Itoa(r.Replicas)},
		{"rate limit", fmt.Sprintf("%d jobs a minute", r.Rate)},
		{"firmware size", formatSize(r.FileSize)},
		{"create devices and broker accounts", formatProvision(r.Provision, r.Accounts, r.Seed)},
		{"connect and inform", formatSeconds(r.Connect)},
		{"kill → successor leads, min / median / max", formatSpread(r.Takeover)},
		{"kill → successor's first job started, min / median / max", formatSpread(r.FirstJob)},
	}
	if err := writeFields(w, fields); err != nil {
		return err
	}
	fmt.Fprintln(w)
	t := newTable(w, "RUN", "KILLED", "SUCCESSOR", "STARTED BEFORE", "LEADS AFTER", "FIRST JOB AFTER", "SUCCEEDED", "FAILED")
	for _, run := range r.Runs {
		t.row(strconv.Itoa(run.Run), run.Killed, run.Successor, strconv.FormatInt(run.StartedBeforeKill, 10),
			formatSeconds(run.Takeover), formatSeconds(run.FirstJob), strconv.FormatInt(run.Succeeded, 10), strconv.FormatInt(run.Failed, 10))
	}
	return t.flush()
}

func formatSpread(s bench.Spread) string {
	if s.Count == 0 {
		return "-"
	}
	return fmt.Sprintf("%s / %s / %s (%d runs)", formatSeconds(s.Min), formatSeconds(s.Median), formatSeconds(s.Max), s.Count)
}
