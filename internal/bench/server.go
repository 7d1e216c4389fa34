package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/otter-ota/otter/internal/server"
)

// ServerOptions says how to run the server under measurement.
type ServerOptions struct {
	// Executable, when set, runs the server in a process of its own as
	// `Executable bench server ...` (the otter binary itself), so that its
	// memory and CPU time are its own; empty runs it in this process,
	// sharing both with the simulated devices.
	Executable string
	// DataDir is the server's data folder; empty uses a temporary folder
	// removed at Close.
	DataDir string
	// DBURL is the database; empty means SQLite in DataDir. A PostgreSQL
	// database gets a new schema, dropped at Close unless KeepSchema.
	DBURL      string
	KeepSchema bool
	// reuse takes DBURL as it is: its search_path names a schema that a
	// kept run left (otter bench lists --reuse).
	reuse bool
	// MQTTAddr is the broker's listen address; empty means 127.0.0.1:0.
	MQTTAddr string
	// CPUProfile, when set, is where the server writes a CPU profile of
	// its run (pprof format); a separate server's profile ends, and
	// CPUProfile.task begins, when the benchmark calls ProfileTask.
	CPUProfile string
	// Trace, when set, is where the server writes an execution trace of
	// its whole run (go tool trace): where its goroutines wait.
	Trace string
	// Stderr receives a separate server's log (warnings and errors); nil
	// discards it.
	Stderr io.Writer
	// Broker is "" (or BrokerEmbedded) for the server's embedded broker,
	// BrokerMosquitto for cluster mode: a private Mosquitto with the
	// dynamic security plugin, Replicas `otter bench server` processes
	// (PostgreSQL and Executable needed) as its clients, and a load
	// balancer in this process in front of their HTTP listeners.
	Broker   string
	Replicas int
	// Accounts, in cluster mode, is how the devices' broker accounts are
	// made: AccountsSeed (or "") or AccountsAPI.
	Accounts string
	// DownloadHTTP serves firmware downloads on a listener of their own
	// (`otter serve --download-http`, fasthttp), where download URLs lead.
	DownloadHTTP bool
}

// How a cluster benchmark makes the devices' broker accounts.
const (
	// AccountsSeed creates the devices through the API while the
	// replicas run without --broker-admin, so otter makes no account,
	// then writes every account into Mosquitto's dynamic security file
	// (dynsec.SeedFile) and restarts Mosquitto and the replicas, these
	// with --broker-admin dynsec. The plugin rewrites its whole file
	// after each command: made one at a time, 10,000 accounts would take
	// hours.
	AccountsSeed = "seed"
	// AccountsAPI has otter create each account as it creates the device,
	// as in production.
	AccountsAPI = "api"
)

// seedsAccounts says the cluster's accounts are written into Mosquitto's
// file rather than made by otter.
func (o ServerOptions) seedsAccounts() bool {
	return o.clustered() && (o.Accounts == "" || o.Accounts == AccountsSeed)
}

// AccountsPath names how a benchmark with opts makes the broker accounts:
// "" with the embedded broker, which has none.
func (o ServerOptions) AccountsPath() string {
	switch {
	case !o.clustered():
		return ""
	case o.seedsAccounts():
		return AccountsSeed
	}
	return AccountsAPI
}

// The brokers a benchmark runs on.
const (
	BrokerEmbedded  = "embedded"
	BrokerMosquitto = "mosquitto"
)

// clustered says the options ask for cluster mode.
func (o ServerOptions) clustered() bool { return o.Broker == BrokerMosquitto }

// check refuses options that cannot run.
func (o ServerOptions) check() error {
	switch o.Broker {
	case "", BrokerEmbedded:
		return nil
	case BrokerMosquitto:
	default:
		return fmt.Errorf("bench: broker %q: want %s or %s", o.Broker, BrokerEmbedded, BrokerMosquitto)
	}
	if !isPostgres(o.DBURL) {
		return errors.New("bench: an external broker needs PostgreSQL (--db postgres://...): replicas share one database")
	}
	if o.Executable == "" {
		return errors.New("bench: an external broker runs the replicas in processes of their own, not in this process (no --in-process)")
	}
	if o.Replicas < 1 {
		return errors.New("bench: an external broker needs at least one replica")
	}
	if o.Accounts != "" && o.Accounts != AccountsSeed && o.Accounts != AccountsAPI {
		return fmt.Errorf("bench: accounts %q: want %s or %s", o.Accounts, AccountsSeed, AccountsAPI)
	}
	if o.CPUProfile != "" || o.Trace != "" {
		return errors.New("bench: --cpuprofile and --trace profile one server, not a cluster's replicas")
	}
	return nil
}

// Server is a running server under measurement.
type Server struct {
	HTTPURL string
	MQTTURL string
	// Token is an admin token.
	Token string
	// PID is the process the server runs in.
	PID int
	// Separate says the server has its process to itself.
	Separate bool
	// DBURL is the database the server uses (with its fresh schema).
	DBURL string
	close func() error
	// profiled says a separate server writes a CPU profile (ProfileTask).
	profiled bool
	// cluster is set in cluster mode: the replicas, the broker and the
	// load balancer HTTPURL names.
	cluster *cluster
}

// Usage reads the memory and CPU time of the server's process; in cluster
// mode, the sum over the replicas that run.
func (s *Server) Usage() (Usage, error) {
	if s.cluster == nil {
		return ReadUsage(s.PID)
	}
	var sum Usage
	for _, p := range s.Processes() {
		if !p.Replica {
			continue
		}
		u, err := ReadUsage(p.PID)
		if err != nil {
			return sum, err
		}
		sum.RSS, sum.PeakRSS, sum.CPU, sum.FDs = sum.RSS+u.RSS, sum.PeakRSS+u.PeakRSS, sum.CPU+u.CPU, sum.FDs+u.FDs
	}
	return sum, nil
}

// Process is one process of the server under measurement.
type Process struct {
	Name string
	PID  int
	// Replica says it is otter (not the broker).
	Replica bool
	// URL is a replica's own HTTP listener.
	URL string
}

// Processes lists the server's processes: the server alone, or each
// running replica and the broker.
func (s *Server) Processes() []Process {
	if s.cluster == nil {
		return []Process{{Name: "server", PID: s.PID, Replica: true, URL: s.HTTPURL}}
	}
	return s.cluster.processes()
}

// Scrape reads the server's metrics; in cluster mode, each running
// replica's, summed (counters and histograms add up; the engine's are
// the scheduling replica's alone).
func (s *Server) Scrape(ctx context.Context) (Metrics, error) {
	sum := Metrics{}
	for _, p := range s.Processes() {
		if !p.Replica {
			continue
		}
		m, err := Scrape(ctx, http.DefaultClient, p.URL)
		if err != nil {
			return nil, err
		}
		for k, v := range m {
			sum[k] += v
		}
	}
	return sum, nil
}

// Close stops the server and removes its temporary data folder.
func (s *Server) Close() error { return s.close() }

// StartServer starts a server on embedded defaults with HTTP and MQTT on
// ephemeral ports of 127.0.0.1. A PostgreSQL database gets a fresh schema
// for the run.
func StartServer(ctx context.Context, opts ServerOptions) (*Server, error) {
	var cleanups []func() error
	cleanup := func() error {
		var errs []error
		for _, f := range slices.Backward(cleanups) {
			errs = append(errs, f())
		}
		return errors.Join(errs...)
	}
	if err := opts.check(); err != nil {
		return nil, err
	}
	if err := opts.prepare(ctx, &cleanups); err != nil {
		return nil, errors.Join(err, cleanup())
	}
	token, err := newToken()
	if err != nil {
		return nil, errors.Join(err, cleanup())
	}
	start := startInProcess
	switch {
	case opts.clustered():
		start = startCluster
	case opts.Executable != "":
		start = startSubprocess
	}
	s, err := start(ctx, opts, token)
	if err != nil {
		return nil, errors.Join(err, cleanup())
	}
	stop := s.close
	s.close = func() error { return errors.Join(stop(), cleanup()) }
	return s, nil
}

// prepare fills in the data folder, the database and the broker address,
// adding what must be removed after the run to cleanups.
func (o *ServerOptions) prepare(ctx context.Context, cleanups *[]func() error) error {
	if o.MQTTAddr == "" {
		o.MQTTAddr = "127.0.0.1:0"
	}
	if o.DataDir == "" {
		dir, err := os.MkdirTemp("", "otter-bench-")
		if err != nil {
			return fmt.Errorf("make a data folder: %w", err)
		}
		o.DataDir = dir
		*cleanups = append(*cleanups, func() error { return os.RemoveAll(dir) })
	}
	if !isPostgres(o.DBURL) || o.reuse {
		return nil
	}
	u, drop, err := FreshSchema(ctx, o.DBURL)
	if err != nil {
		return err
	}
	o.DBURL = u
	if !o.KeepSchema {
		*cleanups = append(*cleanups, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			return drop(ctx)
		})
	}
	return nil
}

func newToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make an admin token: %w", err)
	}
	return "otr_bench-" + hex.EncodeToString(b), nil
}

func (o ServerOptions) config(token string, log *slog.Logger) server.Config {
	c := server.Config{
		DataDir: o.DataDir, HTTPAddr: "127.0.0.1:0", MQTTAddr: o.MQTTAddr, DBURL: o.DBURL,
		AdminToken: token, Logger: log,
	}
	if o.DownloadHTTP {
		c.DownloadAddr = "127.0.0.1:0"
	}
	return c
}

func startInProcess(ctx context.Context, opts ServerOptions, token string) (*Server, error) {
	stopProfile, err := startProfiles(opts.CPUProfile, opts.Trace)
	if err != nil {
		return nil, err
	}
	srv, err := server.Start(ctx, opts.config(token, slog.New(slog.DiscardHandler)))
	if err != nil {
		return nil, errors.Join(err, stopProfile())
	}
	return &Server{
		HTTPURL: srv.HTTPURL(), MQTTURL: srv.MQTTURL(), Token: token, PID: os.Getpid(), DBURL: opts.DBURL,
		close: func() error { return errors.Join(srv.Close(), stopProfile()) },
	}, nil
}

// startProfiles starts a CPU profile and an execution trace of this
// process, each when its path is not empty, until the returned function
// runs.
func startProfiles(cpuPath, tracePath string) (func() error, error) {
	stopCPU, err := startCPUProfile(cpuPath)
	if err != nil {
		return nil, err
	}
	if tracePath == "" {
		return stopCPU, nil
	}
	f, err := os.Create(tracePath)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("create the trace: %w", err), stopCPU())
	}
	if err := trace.Start(f); err != nil {
		return nil, errors.Join(fmt.Errorf("start the trace: %w", err), f.Close(), stopCPU())
	}
	return func() error {
		trace.Stop()
		return errors.Join(f.Close(), stopCPU())
	}, nil
}

// switchProfileOnSignal ends the CPU profile that stop ends and starts
// one into cpuPath.task at the first SIGUSR1 (Server.ProfileTask). The
// returned function stops whichever runs.
func switchProfileOnSignal(cpuPath, tracePath string, stop func() error) func() error {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	var mu sync.Mutex
	stopped := false
	done := make(chan struct{})
	go func() {
		select {
		case <-sig:
		case <-done:
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if stopped || tracePath != "" {
			return // with a trace, the profile covers the whole run as the trace does
		}
		if err := stop(); err != nil {
			stop = func() error { return err }
			return
		}
		next, err := startCPUProfile(cpuPath + ".task")
		if err != nil {
			stop = func() error { return err }
			return
		}
		stop = next
	}()
	return func() error {
		close(done)
		signal.Stop(sig)
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		return stop()
	}
}

// startCPUProfile profiles this process into path until the returned
// function runs; an empty path profiles nothing.
func startCPUProfile(path string) (func() error, error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create the CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("start the CPU profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// handshake is the line a separate server writes on its standard output
// once it serves.
type handshake struct {
	HTTP string `json:"http"`
	MQTT string `json:"mqtt"`
}

// startSubprocess runs `exe bench server` and reads its handshake. The
// child is killed if this process dies first (Pdeathsig), so an
// interrupted benchmark leaves no server behind.
func startSubprocess(ctx context.Context, opts ServerOptions, token string) (*Server, error) {
	cmd, hs, err := startServeProcess(ctx, opts.Executable, opts.serveArgs(), token, opts.Stderr)
	if err != nil {
		return nil, err
	}
	return &Server{HTTPURL: hs.HTTP, MQTTURL: hs.MQTT, Token: token, PID: cmd.Process.Pid, Separate: true, DBURL: opts.DBURL,
		profiled: opts.CPUProfile != "", close: func() error { return stopProcess(cmd) }}, nil
}

// ProfileTask has a separate server that writes a CPU profile end it and
// profile from now on into CPUProfile.task (SIGUSR1), so that the part a
// benchmark measures (a fleet's task) has a profile of its own, without
// the connections before it.
func (s *Server) ProfileTask() error {
	if !s.profiled || s.cluster != nil {
		return nil
	}
	p, err := os.FindProcess(s.PID)
	if err != nil {
		return err
	}
	return p.Signal(syscall.SIGUSR1)
}

// serveArgs are the arguments of `otter bench server` for these options.
func (o ServerOptions) serveArgs() []string {
	return []string{"bench", "server", "--data", o.DataDir, "--mqtt", o.MQTTAddr, "--db", o.DBURL,
		"--cpuprofile", o.CPUProfile, "--trace", o.Trace, "--download-http=" + strconv.FormatBool(o.DownloadHTTP)}
}

// startServeProcess runs `exe args...` (`bench server`) and reads its
// handshake.
func startServeProcess(ctx context.Context, exe string, args []string, token string, stderr io.Writer) (*exec.Cmd, handshake, error) {
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "OTTER_ADMIN_TOKEN="+token)
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, handshake{}, err
	}
	if err := cmd.Start(); err != nil {
		return nil, handshake{}, fmt.Errorf("start the server process: %w", err)
	}
	hs, err := readHandshake(ctx, out)
	if err != nil {
		return nil, hs, errors.Join(fmt.Errorf("the server process did not start: %w", err), stopProcess(cmd))
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return cmd, hs, nil
}

func readHandshake(ctx context.Context, r io.Reader) (handshake, error) {
	type result struct {
		hs  handshake
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var res result
		line, err := bufio.NewReader(r).ReadString('\n')
		switch {
		case err != nil:
			res.err = fmt.Errorf("read its address (see its log above): %w", err)
		default:
			res.err = json.Unmarshal([]byte(line), &res.hs)
		}
		ch <- res
	}()
	select {
	case res := <-ch:
		return res.hs, res.err
	case <-ctx.Done():
		return handshake{}, ctx.Err()
	case <-time.After(2 * time.Minute):
		return handshake{}, errors.New("no address after 2 minutes")
	}
}

// stopProcess asks the server to shut down in order (SIGTERM) and kills it
// if it has not within a minute.
func stopProcess(cmd *exec.Cmd) error {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("the server process: %w", err)
		}
		return nil
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		return fmt.Errorf("the server process did not stop within a minute: killed: %w", <-done)
	}
}

// ServeConfig configures Serve, the server side of a separate-process
// benchmark.
type ServeConfig struct {
	DataDir, DBURL, MQTTAddr, CPUProfile, Trace string
	// Broker (a URL with the admin's credentials), BrokerAdmin,
	// BrokerClientID and PublicURL are a cluster replica's: see
	// server.Config.
	Broker, BrokerAdmin, BrokerClientID, PublicURL string
	// DownloadHTTP serves downloads on a listener of their own.
	DownloadHTTP bool
	// AdminToken is the admin token the parent chose.
	AdminToken string
	// Log receives warnings and errors.
	Log io.Writer
}

// Serve runs a server for a benchmark in this process until ctx ends:
// it raises the open-file limit, optionally profiles the CPU, and writes
// one JSON line with the server's addresses to out once it serves.
func Serve(ctx context.Context, cfg ServeConfig, out io.Writer) error {
	if _, err := RaiseFileLimit(); err != nil {
		return err
	}
	stopProfile, err := startProfiles(cfg.CPUProfile, cfg.Trace)
	if err != nil {
		return err
	}
	if cfg.CPUProfile != "" {
		stopProfile = switchProfileOnSignal(cfg.CPUProfile, cfg.Trace, stopProfile)
	}
	log := slog.New(slog.NewTextHandler(cfg.Log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts := ServerOptions{DataDir: cfg.DataDir, DBURL: cfg.DBURL, MQTTAddr: cfg.MQTTAddr, DownloadHTTP: cfg.DownloadHTTP}
	sc := opts.config(cfg.AdminToken, log)
	sc.Broker, sc.BrokerAdmin, sc.BrokerClientID, sc.PublicURL = cfg.Broker, cfg.BrokerAdmin, cfg.BrokerClientID, cfg.PublicURL
	srv, err := server.Start(ctx, sc)
	if err != nil {
		return errors.Join(err, stopProfile())
	}
	line, _ := json.Marshal(handshake{HTTP: srv.HTTPURL(), MQTT: srv.MQTTURL()})
	if _, err := fmt.Fprintf(out, "%s\n", line); err != nil {
		return errors.Join(err, srv.Close(), stopProfile())
	}
	<-ctx.Done()
	return errors.Join(srv.Close(), stopProfile())
}
