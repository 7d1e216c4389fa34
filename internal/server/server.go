// Package server assembles a running otter: it opens the store, the blob
// store and the signing key named by a Config, mounts the operator API,
// health checks and metrics on the HTTP listener, and shuts all of it down
// in order. cmd/otter only turns flags into a Config.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/otter-ota/otter/internal/api"
	"github.com/otter-ota/otter/internal/blob"
	"github.com/otter-ota/otter/internal/signing"
	"github.com/otter-ota/otter/internal/store"
)

// Config is everything `otter serve` needs. The zero value of each field
// means the embedded default.
type Config struct {
	// DataDir holds the SQLite database, firmware files and the signing key.
	DataDir string
	// HTTPAddr is the listen address of the API, console and downloads.
	HTTPAddr string
	// MQTTAddr is the listen address of the embedded MQTT broker.
	MQTTAddr string
	// DBURL selects the database: "" for SQLite in DataDir, postgres://...
	// for PostgreSQL.
	DBURL string
	// SigningKey is the path of an ed25519 key (PEM, PKCS#8); "" creates or
	// loads DataDir/signing.key.
	SigningKey string
	// AdminToken, when set, becomes the first admin token (automation).
	AdminToken string
	// MaxFirmwareSize bounds an uploaded firmware file; 0 means 2 GiB.
	MaxFirmwareSize int64
	Logger          *slog.Logger
}

// Defaults for an embedded single-node server.
const (
	DefaultDataDir  = "./otter-data"
	DefaultHTTPAddr = ":8080"
	DefaultMQTTAddr = ":1883"
)

// Server is a running otter.
type Server struct {
	cfg        Config
	log        *slog.Logger
	store      store.Store
	http       *http.Server
	httpLn     net.Listener
	adminToken string

	closeOnce sync.Once
	closeErr  error
	served    chan error
}

// Start opens everything the Config names and starts serving. On error it
// releases whatever it had opened.
func Start(ctx context.Context, cfg Config) (s *Server, err error) {
	cfg = cfg.withDefaults()
	s = &Server{cfg: cfg, log: cfg.Logger, served: make(chan error, 1)}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	if err := s.openStore(ctx); err != nil {
		return nil, err
	}
	handler, err := s.buildHandler(ctx)
	if err != nil {
		return nil, err
	}
	if s.httpLn, err = listen(ctx, "--http", cfg.HTTPAddr); err != nil {
		return nil, err
	}
	s.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	go func() { s.served <- s.http.Serve(s.httpLn) }()
	s.log.Info("otter is serving", "http", s.HTTPURL(), "data", cfg.DataDir, "db", s.dbKind())
	return s, nil
}

func (c Config) withDefaults() Config {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = DefaultHTTPAddr
	}
	if c.MQTTAddr == "" {
		c.MQTTAddr = DefaultMQTTAddr
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (s *Server) dbKind() string {
	if s.cfg.DBURL == "" {
		return "sqlite"
	}
	return "postgres"
}

func (s *Server) openStore(ctx context.Context) error {
	url := s.cfg.DBURL
	if url == "" {
		url = "sqlite:" + filepath.Join(s.cfg.DataDir, "otter.db")
	}
	st, err := store.Open(ctx, url, s.log)
	if err != nil {
		return fmt.Errorf("open database (--db): %w", err)
	}
	s.store = st
	token, err := api.BootstrapAdmin(ctx, st, s.cfg.AdminToken)
	if err != nil {
		return fmt.Errorf("create the first admin token: %w", err)
	}
	s.adminToken = token
	return nil
}

func (s *Server) buildHandler(ctx context.Context) (http.Handler, error) {
	blobs, err := blob.NewFS(filepath.Join(s.cfg.DataDir, "blobs"))
	if err != nil {
		return nil, fmt.Errorf("open firmware storage: %w", err)
	}
	signer, err := s.openSigner()
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a, err := api.New(api.Config{
		Store:           s.store,
		Blobs:           blobs,
		Signer:          signer,
		Logger:          s.log,
		Metrics:         reg,
		MaxFirmwareSize: s.cfg.MaxFirmwareSize,
	})
	if err != nil {
		return nil, fmt.Errorf("build the API: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", a.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux, nil
}

func (s *Server) openSigner() (*signing.Signer, error) {
	if s.cfg.SigningKey != "" {
		signer, err := signing.Load(s.cfg.SigningKey)
		if err != nil {
			return nil, fmt.Errorf("load the signing key (--signing-key): %w", err)
		}
		return signer, nil
	}
	signer, err := signing.LoadOrCreate(filepath.Join(s.cfg.DataDir, "signing.key"))
	if err != nil {
		return nil, fmt.Errorf("load or create the signing key: %w", err)
	}
	return signer, nil
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("not ready: database does not answer", "err", err)
		http.Error(w, "database does not answer", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// listen opens a TCP listener and, when the address is taken, says which
// flag moves it: the most common first-run problem (Mosquitto on :1883).
func listen(ctx context.Context, flag, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("%s is already in use by another program: choose another address with %s (for example %s 127.0.0.1:0): %w", addr, flag, flag, err)
	}
	if err != nil {
		return nil, fmt.Errorf("listen on %s (%s): %w", addr, flag, err)
	}
	return ln, nil
}

// HTTPURL is the base URL of the HTTP listener, with the port it really got.
func (s *Server) HTTPURL() string {
	return "http://" + dialable(s.httpLn.Addr())
}

// AdminToken returns the admin token created at this start, or "" when the
// database already had tokens. It is shown once and never stored in clear.
func (s *Server) AdminToken() string { return s.adminToken }

// Store returns the server's store, for tests and tools in this module.
func (s *Server) Store() store.Store { return s.store }

// Wait blocks until the HTTP server stops on its own (an error) or ctx ends.
func (s *Server) Wait(ctx context.Context) error {
	select {
	case err := <-s.served:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
		return nil
	}
}

// Shutdown stops accepting work, lets requests in progress finish until ctx
// ends, and closes the database.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.http != nil {
			errs = append(errs, s.http.Shutdown(ctx))
		} else if s.httpLn != nil {
			errs = append(errs, s.httpLn.Close())
		}
		if s.store != nil {
			errs = append(errs, s.store.Close())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// Close shuts down with a short grace period.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.Shutdown(ctx)
}

// dialable turns a listener address into one a client can dial: a wildcard
// host becomes 127.0.0.1.
func dialable(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
