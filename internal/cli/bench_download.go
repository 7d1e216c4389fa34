package cli

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/otter-ota/otter/internal/bench"
)

func (a *app) benchDownloadCommand() *cobra.Command {
	var (
		cfg                         bench.DownloadConfig
		size, db, cpuprofile, trace string
		inProcess, downloadHTTP     bool
	)
	cmd := &cobra.Command{
		Use:   "download",
		Short: "Compare firmware downloads through otter's signed URLs with nginx serving the same file",
		Long: `Start a server and an nginx of its own (on a free port of 127.0.0.1, with
sendfile on, worker_processes auto and access logging off, its files in a
temporary folder), upload a firmware of --size to otter, get its signed
download URL as a device does (a request task, the device's request
answered with an offer), write the same bytes to nginx's root, and run
wrk -c C -t T -d D against otter, then nginx, --rounds times. It shows each
round's figures, the means and otter's transfer rate over nginx's.

It needs nginx and wrk: apt-get install -y nginx wrk. nginx's service is
not used.`,
		Example: `  otter bench download
  otter bench download --size 1MiB --rounds 5
  otter bench download --cpuprofile otter.pprof
  otter bench download --download-http`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := parseSize(size)
			if err != nil || n <= 0 {
				return usageErrorf("--size: want a size of at least one byte, e.g. 64KiB")
			}
			if cfg.Rounds <= 0 || cfg.Connections <= 0 || cfg.Threads <= 0 || cfg.Duration < time.Second {
				return usageErrorf("--rounds, --connections and --threads must be at least 1, --duration at least 1s")
			}
			cfg.FileSize, cfg.Progress = n, a.env.Stderr
			cfg.Server = bench.ServerOptions{DBURL: db, CPUProfile: cpuprofile, Trace: trace, Stderr: a.env.Stderr, DownloadHTTP: downloadHTTP}
			if !inProcess {
				if cfg.Server.Executable, err = os.Executable(); err != nil {
					return fmt.Errorf("find this program to run the server in its own process (or use --in-process): %w", err)
				}
			}
			rep, err := bench.RunDownload(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return a.render(rep, func(w io.Writer) error { return writeFields(w, downloadFields(rep)) })
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&size, "size", "64KiB", "size `S` of the firmware file, e.g. 64KiB, 1MiB")
	fl.IntVar(&cfg.Rounds, "rounds", 3, "wrk runs against each server `N`, alternating")
	fl.DurationVar(&cfg.Duration, "duration", 5*time.Second, "length `D` of each wrk run (whole seconds)")
	fl.IntVar(&cfg.Connections, "connections", 64, "wrk's connections `C` (-c)")
	fl.IntVar(&cfg.Threads, "threads", 2, "wrk's threads `T` (-t)")
	fl.StringVar(&db, "db", "", "database URL: empty for SQLite in a temporary folder, postgres://... for PostgreSQL (a fresh schema)")
	fl.StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile of otter's server to `FILE` (go tool pprof FILE)")
	fl.StringVar(&trace, "trace", "", "write an execution trace of otter's server to `FILE` (go tool trace FILE)")
	fl.BoolVar(&inProcess, "in-process", false, "run otter's server in this process")
	fl.BoolVar(&downloadHTTP, "download-http", false, "serve the downloads on otter's download listener (serve --download-http, fasthttp) instead of its --http listener (net/http)")
	return cmd
}

func downloadFields(r *bench.DownloadReport) []field {
	f := []field{
		{"firmware size", formatSize(r.FileSize)},
		{"database", r.Database},
		{"server process", serverProcess(r.SeparateServer)},
		{"otter listener", listenerName(r.Listener)},
		{"nginx", r.NginxVersion},
	}
	for i, round := range r.Rounds {
		f = append(f, field{"round " + strconv.Itoa(i+1), "otter " + formatWrk(round.Otter) + "; nginx " + formatWrk(round.Nginx)})
	}
	return append(f,
		field{"otter (mean)", formatWrk(r.Otter)},
		field{"nginx (mean)", formatWrk(r.Nginx)},
		field{"ratio otter / nginx", fmt.Sprintf("%.2f", r.Ratio)},
		field{"CPU per request (otter / nginx)", fmt.Sprintf("%.1f µs / %.1f µs (%s / %s in all)",
			float64(r.OtterCPUPerRequest)/float64(time.Microsecond), float64(r.NginxCPUPerRequest)/float64(time.Microsecond),
			formatSeconds(r.OtterCPU), formatSeconds(r.NginxCPU))},
		field{"load average at the end", r.Load},
	)
}

func listenerName(l string) string {
	if l == "download-http" {
		return "--download-http (fasthttp)"
	}
	return "--http (net/http)"
}

func formatWrk(r bench.WrkResult) string {
	return fmt.Sprintf("%.0f MiB/s, %.0f requests/s", r.MiBPerSecond(), r.RequestsPerSecond)
}
