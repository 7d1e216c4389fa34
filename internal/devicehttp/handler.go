// Package devicehttp is otter's device-facing HTTP: the device API for
// devices that cannot hold an MQTT connection (/device/v1/..., see
// sdk/wire/http.go) and firmware downloads from signed, short-lived URLs
// (/dl/{id}). It is apart from the operator API because its callers, its
// authentication (device secrets, URL signatures) and its load (a whole
// fleet polling) differ; a concurrency limit keeps that load from starving
// the operator API that shares the listener.
package devicehttp

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/otter-ota/otter/internal/blob"
	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/sdk/wire"
)

// Store is what the handler reads from persistence; store.Store has it.
type Store interface {
	// Credentials answers an *ota.Error of code ENOTFOUND for an unknown
	// device.
	Credentials(ctx context.Context, product, key string) (ota.DeviceCredentials, error)
	GetFirmware(ctx context.Context, id int64) (ota.Firmware, error)
}

// Defaults of Config.
const (
	// DefaultMaxInFlight bounds the device API requests handled at once.
	DefaultMaxInFlight = 256
	// DefaultCallTimeout bounds one engine call.
	DefaultCallTimeout = 10 * time.Second
	// DefaultBodyTimeout bounds the time a device may take to send a
	// request body, so that a slow sender cannot hold a slot for long.
	DefaultBodyTimeout = 10 * time.Second
	// retryAfterSeconds is the Retry-After of 429 and 503 answers.
	retryAfterSeconds = 5
)

// Config wires a Handler. Store, Blobs, Devices and Signer are required.
type Config struct {
	Store   Store
	Blobs   blob.Store
	Devices engine.Devices
	// Signer checks download URLs; the engine must make them with the same
	// signer (or one with the same key).
	Signer *URLSigner
	// Logger receives errors of the server; nil discards them.
	Logger *slog.Logger
	// Metrics receives the handler's metrics; nil keeps them private.
	Metrics prometheus.Registerer
	// MaxInFlight bounds the device API requests handled at once; more
	// are answered 429 with Retry-After. 0 means DefaultMaxInFlight.
	MaxInFlight int
	// MaxDownloads bounds the downloads served at once (503 with
	// Retry-After beyond); 0 means no limit.
	MaxDownloads int
	// CredentialTTL and CredentialCacheSize tune the credential cache;
	// 0 means DefaultCredentialTTL and DefaultCredentialCacheSize. The TTL
	// runs on the wall clock, not on Now.
	CredentialTTL       time.Duration
	CredentialCacheSize int
	// CallTimeout bounds one engine call; 0 means DefaultCallTimeout.
	CallTimeout time.Duration
	// BodyTimeout bounds reading one request body; 0 means
	// DefaultBodyTimeout.
	BodyTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Redirect answers a download, once its signed URL is checked, with a
	// redirect to a short-lived URL of the blob store itself, so firmware
	// bytes do not pass through otter. Blobs must be a blob.Presigner.
	Redirect bool
}

// Handler serves the device API and firmware downloads.
type Handler struct {
	cfg       Config
	log       *slog.Logger
	metrics   *metrics
	creds     *credCache
	firmwares *firmwareCache
	slots     chan struct{}   // device API requests in flight
	dlSlots   chan struct{}   // downloads in flight; nil: no limit
	dlPace    downloadPace    // the Retry-After of a download refused a slot
	logErrors *rate.Sometimes // server errors are logged at most once a second
	shared    sharedOpener    // the blob store, when it keeps files open
	fastPool  sync.Pool       // of *fastDownload
}

// New checks cfg and returns a Handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Store == nil || cfg.Blobs == nil || cfg.Devices == nil || cfg.Signer == nil {
		return nil, errors.New("devicehttp: Config needs Store, Blobs, Devices and Signer")
	}
	if _, ok := cfg.Blobs.(blob.Presigner); cfg.Redirect && !ok {
		return nil, errors.New("download redirects need a blob store that makes presigned URLs (S3)")
	}
	cfg = withDefaults(cfg)
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	h := &Handler{
		cfg: cfg, log: cfg.Logger, metrics: m,
		creds:     newCredCache(cfg.Store, cfg.CredentialTTL, cfg.CredentialCacheSize, cfg.Now, m.credLookup),
		firmwares: newFirmwareCache(cfg.Store),
		slots:     make(chan struct{}, cfg.MaxInFlight),
		logErrors: &rate.Sometimes{Interval: time.Second},
	}
	if cfg.MaxDownloads > 0 {
		h.dlSlots = make(chan struct{}, cfg.MaxDownloads)
	}
	h.shared, _ = cfg.Blobs.(sharedOpener)
	return h, nil
}

func withDefaults(cfg Config) Config {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.CredentialTTL <= 0 {
		cfg.CredentialTTL = DefaultCredentialTTL
	}
	if cfg.CredentialCacheSize <= 0 {
		cfg.CredentialCacheSize = DefaultCredentialCacheSize
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = DefaultBodyTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg
}

// CredentialsChanged makes the device API forget what it cached of a
// device's credentials: after a rotation or deletion the old secret is
// refused at once, and a new secret or a new device is let in at once.
func (h *Handler) CredentialsChanged(product, key string) {
	h.creds.forget(product, key)
}

// CredentialReader reads device credentials; store.Store is one.
type CredentialReader interface {
	Credentials(ctx context.Context, product, key string) (ota.DeviceCredentials, error)
}

// Sharing returns a CredentialReader that reads st and keeps each answer
// in the handler's credential cache, as if the device API had read it
// itself at that moment. The embedded broker reads a device's credentials
// at every login; through Sharing, the downloads of a device that logged
// in over MQTT find it in the cache instead of reading the store again
// (about 76 µs a device). An entry so cached is dropped by
// CredentialsChanged and expires after CredentialTTL like any other.
func (h *Handler) Sharing(st CredentialReader) CredentialReader {
	return sharedReads{st: st, c: h.creds}
}

type sharedReads struct {
	st CredentialReader
	c  *credCache
}

func (s sharedReads) Credentials(ctx context.Context, product, key string) (ota.DeviceCredentials, error) {
	return s.c.read(ctx, s.st, product, key)
}

// Routes returns the handler of /dl/ and /device/; mount it at the root of
// the HTTP listener. Other paths answer 404.
func (h *Handler) Routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+downloadPrefix+"{id}", h.download) // GET patterns take HEAD too
	mux.HandleFunc(downloadPrefix+"{id}", notAllowed("GET, HEAD"))
	mux.HandleFunc(downloadPrefix, func(w http.ResponseWriter, _ *http.Request) {
		plainError(w, http.StatusNotFound, "no such download: the path is /dl/{firmware id}")
	})
	for _, e := range h.endpoints() {
		mux.Handle(e.method+" "+wire.HTTPPath(e.kind), h.deviceCall(e))
		mux.Handle(wire.HTTPPath(e.kind), h.wrongMethod(e))
	}
	mux.Handle(wire.HTTPPrefix, h.unknownPath())
	// Another version of the API (/device/v2/...) or a mistyped one is
	// answered as any unknown path is: a reply, not net/http's text.
	mux.Handle("/device/", h.unknownPath())
	return mux
}

func notAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		plainError(w, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed here; use "+allow)
	}
}

// plainError writes a short text answer that must not be cached.
func plainError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, msg, status)
}

// acquire takes a slot of sem without waiting; a nil sem has no limit.
func acquire(sem chan struct{}) bool {
	if sem == nil {
		return true
	}
	select {
	case sem <- struct{}{}:
		return true
	default:
		return false
	}
}

func release(sem chan struct{}) {
	if sem != nil {
		<-sem
	}
}
