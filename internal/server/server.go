// Package server assembles a running otter: it opens the store, the blob
// store and the signing keys named by a Config, builds the rollout engine,
// the embedded MQTT broker, the device HTTP API with its firmware
// downloads, the operator API and the console, serves them with health
// checks and metrics, runs the engine, and shuts all of it down in order.
// The CLI (internal/cli, `otter serve`) only turns flags into a Config.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"

	"github.com/otter-ota/otter/internal/api"
	"github.com/otter-ota/otter/internal/brokeradmin"
	"github.com/otter-ota/otter/internal/brokeradmin/dynsec"
	"github.com/otter-ota/otter/internal/console"
	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/deadline"
	"github.com/otter-ota/otter/internal/devicehttp"
	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/listenaddr"
	"github.com/otter-ota/otter/internal/mqtt"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/priority"
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
	// TLSCertFile and TLSKeyFile (PEM), when set, serve HTTPAddr over
	// HTTPS: API, console, downloads and the device HTTP API.
	TLSCertFile string
	TLSKeyFile  string
	// MQTTAddr is the listen address of the embedded MQTT broker.
	MQTTAddr string
	// MQTTTLSAddr, with MQTTCertFile and MQTTKeyFile (PEM), adds a TLS
	// listener to the broker.
	MQTTTLSAddr  string
	MQTTCertFile string
	MQTTKeyFile  string
	// PublicURL is the base URL devices reach the HTTP listener at (in
	// download URLs); "" derives it from the listener's address.
	PublicURL string
	// DownloadAddr, when set, is the listen address of a listener of its
	// own for firmware downloads (/dl/ only), served with fasthttp; the
	// download URLs then lead there. It serves TLS with TLSCertFile too.
	DownloadAddr string
	// DownloadPublicURL is the base URL devices reach DownloadAddr at;
	// "" derives it from the listener's address.
	DownloadPublicURL string
	// PublicMQTT is the broker URL the server tells tools (the simulator)
	// about; "" derives it from the broker's address.
	PublicMQTT string
	// DownloadTTL is how long a download URL stays valid; 0 means 24 h.
	DownloadTTL time.Duration
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
	// Blob selects the firmware storage: "" for files in DataDir/blobs,
	// s3://bucket/prefix?endpoint=...&region=... for S3-compatible storage
	// (PostgreSQL only).
	Blob string
	// DownloadRedirect answers device downloads with a redirect to a
	// presigned URL of the S3 store instead of proxying the bytes.
	DownloadRedirect bool
	// Getenv reads the AWS_* credentials of S3 storage; nil means os.Getenv.
	Getenv func(string) string
	// MaxDownloads bounds the firmware downloads served at once (503 with
	// Retry-After beyond); 0 means DefaultMaxDownloads.
	MaxDownloads int
	// MQTTMaxPerDevice bounds the MQTT connections one device holds at
	// once; 0 means mqtt.DefaultMaxConnectionsPerDevice.
	MQTTMaxPerDevice int
	// EnOSClockSkew is how far the timestamp of an EnOS device login may
	// be from the server's clock; 0 means mqtt.DefaultEnOSClockSkew.
	EnOSClockSkew time.Duration
	// HTTPTimeouts are the HTTP listener's deadlines; zero fields mean
	// deadline.Default.
	HTTPTimeouts deadline.Timeouts
	// Broker, when set (mqtt://host:port or mqtts://host:port), replaces
	// the embedded MQTT broker with an external one that otter connects
	// to as a client (PostgreSQL only). BrokerUsername and BrokerPassword
	// override credentials in the URL.
	Broker         string
	BrokerUsername string
	BrokerPassword string
	// BrokerAuthSecret, when set, serves the endpoints an external broker
	// with HTTP authentication asks (internal/brokerauth), to the requests
	// that carry it.
	BrokerAuthSecret string
	// BrokerCA is a PEM file of the certificate authorities to trust for
	// an mqtts:// Broker, instead of the system's: for a broker whose
	// certificate a private CA issued.
	BrokerCA string
	// BrokerClientID is the client id at the external broker of the
	// replica that schedules (the same on every replica); "" means
	// DefaultBrokerClientID.
	BrokerClientID string
	// BrokerAdmin, "dynsec", has otter keep every device's account in the
	// external broker's dynamic security plugin (Mosquitto 2); "" leaves
	// the broker's accounts to the operator.
	BrokerAdmin string
	// AdvertiseURL is where the other replicas of the cluster reach this
	// one's HTTP listener, to forward what needs the engine; "" means
	// HTTPURL.
	AdvertiseURL string
	// SecureCookies marks the console's cookies Secure, for a console
	// served over HTTPS by a TLS-terminating proxy.
	SecureCookies bool
	Logger        *slog.Logger
}

// Version is the server's version, reported by the API.
const Version = "0.1.0"

// Defaults for an embedded single-node server.
const (
	DefaultDataDir  = "./otter-data"
	DefaultHTTPAddr = ":8080"
	DefaultMQTTAddr = ":1883"
	// DefaultMaxDownloads bounds concurrent downloads: each holds a file
	// and a connection, and a fleet told to upgrade at once must queue
	// (devices honour Retry-After) rather than exhaust file descriptors.
	DefaultMaxDownloads = 256
)

// Server is a running otter.
type Server struct {
	cfg        Config
	log        *slog.Logger
	store      store.Store
	reg        *prometheus.Registry
	brokerAuth http.Handler  // the external broker's HTTP authentication, or nil
	broker     *mqtt.Broker  // the embedded broker, or nil with Config.Broker
	admin      *dynsec.Admin // the broker's account admin, or nil
	http       *http.Server
	httpLn     net.Listener
	dl         *fasthttp.Server // the download listener's server, or nil
	dlLn       net.Listener
	tls        *tls.Config
	adminToken string
	// started is set once Start is done: /readyz waits for it, so that a
	// client polling it finds the first admin token made.
	started atomic.Bool

	// cluster is this process as a replica: leadership, the current
	// term's engine and external broker client, heartbeat, forwarding.
	cluster   cluster
	engineCfg engine.Config
	closing   atomic.Bool
	served    chan error
	closeOnce sync.Once
	closeErr  error
}

// Start opens everything the Config names and starts serving. On error it
// releases whatever it had opened.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, log: cfg.Logger, served: make(chan error, 2)}
	if err := s.start(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if s.dlLn != nil {
		s.log.Info("firmware downloads are served on their own listener", "download_http", s.DownloadURL(), "download_urls", s.downloadBaseURL())
	}
	s.log.Info("otter is serving", "http", s.HTTPURL(), "mqtt", s.MQTTURL(), "data", cfg.DataDir, "db", s.dbKind())
	return s, nil
}

func (s *Server) start(ctx context.Context) error {
	if err := s.cfg.checkBaseURLs(); err != nil {
		return err
	}
	if err := s.cfg.checkBlobFlags(s.dbKind()); err != nil {
		return err
	}
	if err := s.cfg.checkBrokerFlags(s.dbKind()); err != nil {
		return err
	}
	s.reg = prometheus.NewRegistry()
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := s.openStore(ctx); err != nil {
		return err
	}
	if err := s.initCluster(); err != nil {
		return err
	}
	// Listen first: download URLs need the real HTTP address.
	var err error
	if s.httpLn, err = listen(ctx, "--http", s.cfg.HTTPAddr); err != nil {
		return err
	}
	if s.cfg.DownloadAddr != "" {
		if s.dlLn, err = listen(ctx, "--download-http", s.cfg.DownloadAddr); err != nil {
			return err
		}
	}
	if s.tls, err = s.loadTLS(); err != nil {
		return err
	}
	handler, err := s.assemble(ctx)
	if err != nil {
		return err
	}
	if err := s.run(ctx, handler); err != nil {
		return err
	}
	// Only now, with every listener bound and serving, is the first admin
	// token made: a start that fails (a port taken) must not create a
	// token that no one was shown.
	if err := s.bootstrapAdmin(ctx); err != nil {
		return err
	}
	s.started.Store(true)
	return nil
}

// loadTLS reads the HTTPS certificate, or returns nil for plain HTTP.
func (s *Server) loadTLS() (*tls.Config, error) {
	if s.cfg.TLSCertFile == "" && s.cfg.TLSKeyFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("HTTPS (--tls-cert, --tls-key): load certificate %q and key %q: %w", s.cfg.TLSCertFile, s.cfg.TLSKeyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

func (s *Server) bootstrapAdmin(ctx context.Context) error {
	token, err := api.BootstrapAdmin(ctx, s.store, s.cfg.AdminToken)
	if err != nil {
		return fmt.Errorf("create the first admin token: %w", err)
	}
	s.adminToken = token
	if token == "" && s.cfg.AdminToken != "" {
		// OTTER_ADMIN_TOKEN only seeds an empty database; say so rather
		// than let the operator wonder why it is refused.
		_, err := s.store.TokenByHash(ctx, credential.Hash(s.cfg.AdminToken))
		if ota.ErrorCode(err) == ota.ENOTFOUND {
			s.log.Warn("OTTER_ADMIN_TOKEN is not a token of this database, which had tokens already: it is ignored; create an admin token with: otter token create --data DIR --role admin --name NAME (server stopped)")
		}
	}
	return nil
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
	if c.MaxDownloads <= 0 {
		c.MaxDownloads = DefaultMaxDownloads
	}
	c.HTTPTimeouts = c.HTTPTimeouts.OrDefault()
	return c
}

func (s *Server) dbKind() string {
	if strings.HasPrefix(s.cfg.DBURL, "postgres://") || strings.HasPrefix(s.cfg.DBURL, "postgresql://") {
		return "postgres"
	}
	return "sqlite"
}

// DatabaseURL is the database a server with these --data and --db flags
// uses: dbURL, or SQLite in dataDir.
func DatabaseURL(dataDir, dbURL string) string {
	if dbURL != "" {
		return dbURL
	}
	return "sqlite:" + SQLitePath(dataDir)
}

// SQLitePath is the SQLite database file in dataDir.
func SQLitePath(dataDir string) string { return filepath.Join(dataDir, "otter.db") }

func (s *Server) openStore(ctx context.Context) error {
	st, err := store.Open(ctx, DatabaseURL(s.cfg.DataDir, s.cfg.DBURL), s.log)
	if err != nil {
		return fmt.Errorf("open database (--db): %w", err)
	}
	s.store = st
	return nil
}

// assemble builds the engine, the broker and the HTTP handlers around the
// store. The engine and the broker need each other (devices move jobs,
// jobs send commands), so the engine sends through a relay set once the
// broker exists; it sends nothing before Run.
func (s *Server) assemble(ctx context.Context) (http.Handler, error) {
	blobs, err := s.openBlobs(ctx)
	if err != nil {
		return nil, err
	}
	signer, err := s.openSigner()
	if err != nil {
		return nil, err
	}
	if err := s.checkSigningKey(ctx, signer); err != nil {
		return nil, err
	}
	urls, err := s.urlSigner(ctx)
	if err != nil {
		return nil, err
	}
	box, err := signer.SecretBox()
	if err != nil {
		return nil, err
	}
	relay := &downlinkRelay{}
	// Each term of leadership runs an engine of its own (see replica.go).
	// The operator's reads go before the engine's job starts (package
	// priority): the API counts them, the engine yields to them.
	reads := new(priority.Reads)
	s.engineCfg = engine.Config{Store: s.store, Downlink: relay, URLs: urls, Commands: signer, Logger: s.log, Metrics: replacing{s.reg}, Reads: reads}
	engines := &s.cluster.engines
	devices, err := devicehttp.New(devicehttp.Config{
		Store: s.store, Blobs: blobs, Devices: engines, Signer: urls, Logger: s.log, Metrics: s.reg,
		Redirect:     s.cfg.DownloadRedirect,
		MaxDownloads: s.cfg.MaxDownloads,
	})
	if err != nil {
		return nil, fmt.Errorf("build the device API: %w", err)
	}
	// The embedded broker's logins fill the device API's credential
	// cache, so that a device's download does not read the store again.
	revoke, accounts, err := s.openDeviceBroker(ctx, relay, box, devices.Sharing(s.store))
	if err != nil {
		return nil, err
	}
	a, err := api.New(api.Config{
		Store: s.store, Blobs: blobs, Signer: signer, Secrets: box, Logger: s.log, Metrics: s.reg,
		MaxFirmwareSize: s.cfg.MaxFirmwareSize, Engine: engines, Info: s.info(), Replicas: s.replicas,
		Revoker: append(revoke, devices), Accounts: accounts, Reads: reads,
	})
	if err != nil {
		return nil, fmt.Errorf("build the API: %w", err)
	}
	con, err := console.New(console.Config{
		Store: s.store, API: s.forward(a.Handler()), Logger: s.log, SecureCookies: s.cfg.SecureCookies,
	})
	if err != nil {
		return nil, fmt.Errorf("build the console: %w", err)
	}
	if s.brokerAuth, err = s.brokerAuthHandler(); err != nil {
		return nil, err
	}
	if s.dlLn != nil {
		s.dl = s.downloadServer(devices)
	}
	return s.forward(s.mux(a.Handler(), devices.Routes(), con.Handler())), nil
}

// openDeviceBroker opens what devices reach over MQTT: with --broker, the
// external broker's account admin (the broker client itself runs with the
// engine, only on the replica that schedules: beginTerm); otherwise the
// embedded broker, which then carries the downlinks, is told of revoked
// credentials and checks logins against creds.
func (s *Server) openDeviceBroker(ctx context.Context, relay *downlinkRelay, box *credential.Box, creds mqtt.Credentials) (revokers, brokeradmin.Provisioner, error) {
	if s.cfg.Broker != "" {
		// The admin goes first: it gives otter's user the right to
		// subscribe to the uplinks.
		var err error
		if s.admin, err = s.dialAdmin(ctx); err != nil {
			return nil, nil, err
		}
		if s.admin == nil {
			return nil, nil, nil
		}
		return nil, s.admin, nil
	}
	var err error
	s.broker, err = mqtt.New(mqtt.Config{
		Addr: s.cfg.MQTTAddr, TLSAddr: s.cfg.MQTTTLSAddr, TLSCertFile: s.cfg.MQTTCertFile, TLSKeyFile: s.cfg.MQTTKeyFile,
		Devices: &s.cluster.engines, Credentials: creds, Logger: s.log, Metrics: s.reg,
		MaxConnectionsPerDevice: s.cfg.MQTTMaxPerDevice, Secrets: box, EnOSClockSkew: s.cfg.EnOSClockSkew,
	})
	if err != nil {
		return nil, nil, err
	}
	relay.to = s.broker
	return revokers{s.broker}, nil, nil
}

func (s *Server) mux(apiHandler, deviceHandler, consoleHandler http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", consoleHandler)
	mux.Handle("/api/", apiHandler)
	mux.Handle("/dl/", deviceHandler)
	mux.Handle("/device/", deviceHandler)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	if s.brokerAuth != nil {
		mux.Handle("/broker/", s.brokerAuth)
	}
	return mux
}

// run starts the engine (when this replica leads), the broker and the HTTP
// server.
func (s *Server) run(ctx context.Context, handler http.Handler) error {
	if err := s.startCluster(ctx, s.engineCfg); err != nil {
		return err
	}
	if s.broker != nil {
		if err := s.broker.Start(ctx); err != nil {
			return err
		}
	}
	// Deadlines per request, not net/http's per-connection ReadTimeout and
	// WriteTimeout: see package deadline.
	s.http = s.cfg.HTTPTimeouts.Server(handler)
	s.http.ErrorLog = slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	s.http.TLSConfig = s.tls
	go func() { s.served <- s.serveHTTP() }()
	if s.dl != nil {
		go func() { s.served <- s.serveDownloads() }()
	}
	return nil
}

func (s *Server) serveHTTP() error {
	if s.tls != nil {
		return s.http.ServeTLS(s.httpLn, "", "") // the certificate is in TLSConfig
	}
	return s.http.Serve(s.httpLn)
}

// urlSigner signs download URLs with a key every replica shares.
func (s *Server) urlSigner(ctx context.Context) (*devicehttp.URLSigner, error) {
	key, err := devicehttp.LoadKey(ctx, s.store)
	if err != nil {
		return nil, fmt.Errorf("load the download URL key: %w", err)
	}
	ttl := s.cfg.DownloadTTL
	if ttl <= 0 {
		ttl = devicehttp.DefaultURLTTL
	}
	return devicehttp.NewURLSigner(s.downloadBaseURL(), key, ttl, nil)
}

func (s *Server) info() api.ServerInfo {
	info := api.ServerInfo{Version: Version, MQTT: s.MQTTURL(), HTTP: s.publicURL(), Database: s.dbKind()}
	if s.broker == nil {
		return info
	}
	if a := s.broker.TLSAddr(); a != nil {
		info.MQTTTLS = "tls://" + dialable(a)
	}
	return info
}

func (s *Server) publicURL() string {
	if s.cfg.PublicURL != "" {
		return strings.TrimRight(s.cfg.PublicURL, "/")
	}
	return s.HTTPURL()
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
	if !s.started.Load() {
		http.Error(w, "starting", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("not ready: database does not answer", "err", err)
		http.Error(w, "database does not answer", http.StatusServiceUnavailable)
		return
	}
	if ext := s.cluster.ext.Load(); ext != nil {
		if err := ext.Ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	_, _ = w.Write([]byte("ready\n"))
}

// revokers tells every part of the server that serves devices that a
// device's credentials changed: the device API's credential cache and the
// broker's sessions.
type revokers []api.Revoker

func (rs revokers) CredentialsChanged(product, key string) {
	for _, r := range rs {
		r.CredentialsChanged(product, key)
	}
}

// downlinkRelay hands the engine's messages to the broker once it exists.
type downlinkRelay struct{ to engine.Downlink }

func (r *downlinkRelay) Send(product, device, kind string, payload []byte) {
	r.to.Send(product, device, kind, payload)
}

// listen opens a TCP listener and, when the address is taken, says which
// flag moves it: the most common first-run problem (Mosquitto on :1883).
func listen(ctx context.Context, flag, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("%s is already in use by another program: choose another address with %s (for example %s %s): %w", addr, flag, flag, listenaddr.Next(addr, ":8081"), err)
	}
	if err != nil {
		return nil, fmt.Errorf("listen on %s (%s): %w", addr, flag, err)
	}
	return ln, nil
}

// MQTTURL is the broker's URL as the server tells tools about it.
func (s *Server) MQTTURL() string {
	if s.cfg.PublicMQTT != "" {
		return s.cfg.PublicMQTT
	}
	if s.cfg.Broker != "" {
		if u, _, _, err := s.cfg.brokerURL(); err == nil {
			return u.String()
		}
	}
	if s.broker == nil {
		return ""
	}
	return "tcp://" + dialable(s.broker.Addr())
}

// HTTPURL is the base URL of the HTTP listener, with the port it really
// got: https:// when it serves TLS.
func (s *Server) HTTPURL() string {
	scheme := "http://"
	if s.tls != nil {
		scheme = "https://"
	}
	return scheme + dialable(s.httpLn.Addr())
}

// PublicURL is the base URL clients use: --public-url, or HTTPURL.
func (s *Server) PublicURL() string { return s.publicURL() }

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

// Shutdown stops in order: the HTTP server (requests in progress finish
// until ctx ends), the broker (each connection's disconnection reaches the
// engine), the engine, and last the database.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.http != nil {
			errs = append(errs, s.shutdownHTTP(ctx))
		} else if s.httpLn != nil {
			errs = append(errs, s.httpLn.Close())
		}
		if s.dl != nil {
			errs = append(errs, s.shutdownDownloads(ctx))
		} else if s.dlLn != nil {
			errs = append(errs, s.dlLn.Close())
		}
		if s.broker != nil {
			errs = append(errs, s.broker.Close())
		}
		if s.cluster.stop != nil {
			// The term ends: the external broker's client, then the engine.
			s.closing.Store(true)
			s.cluster.stop()
			s.cluster.done.Wait()
			// A row left behind is pruned with the gone replicas: not worth
			// failing a stop that has run out of time (a loaded engine can
			// spend the whole budget on its last commits).
			if err := s.forgetReplica(ctx); err != nil {
				s.log.Warn("this replica stays listed as gone until it is pruned", "err", err, "prune_after", pruneAfter)
			}
		}
		if s.admin != nil {
			errs = append(errs, s.admin.Close())
		}
		if s.store != nil {
			errs = append(errs, s.store.Close())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// httpGrace bounds the wait for requests in progress: long downloads and
// connections that never sent a request (Go waits 5 s for those) must not
// hold a shutdown; devices resume downloads anyway.
const httpGrace = 2 * time.Second

func (s *Server) shutdownHTTP(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, httpGrace)
	defer cancel()
	if err := s.http.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) {
		return s.http.Close()
	} else if err != nil {
		return err
	}
	return nil
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
