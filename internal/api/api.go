// Package api serves otter's operator REST API under /api/v1: products,
// devices, firmware, tokens, events, and upgrade tasks and their jobs, described by an OpenAPI 3.1
// document generated from the Go types. Every error is an RFC 9457 problem
// with an otter error code; every operation declares the role it needs and
// one middleware enforces it.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humachi"
	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/otter-ota/otter/internal/blob"
	"github.com/otter-ota/otter/internal/brokeradmin"
	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/priority"
	"github.com/otter-ota/otter/internal/signing"
	"github.com/otter-ota/otter/internal/store"
)

// Prefix is the path under which the API is served.
const Prefix = "/api/v1"

// DefaultMaxFirmwareSize is the largest firmware file accepted when Config
// sets no limit: 2 GiB.
const DefaultMaxFirmwareSize int64 = 2 << 30

// Config is what the API needs; Store, Blobs and Signer are required.
type Config struct {
	Store  store.Store
	Blobs  blob.Store
	Signer *signing.Signer
	// Logger receives internal errors (clients see only "internal error").
	// Nil discards them.
	Logger *slog.Logger
	// Metrics receives the request metrics; nil keeps them private.
	Metrics prometheus.Registerer
	// MaxFirmwareSize caps a firmware upload in bytes (0: 2 GiB).
	MaxFirmwareSize int64
	// Engine is the rollout engine that creates and changes tasks. Leave it
	// nil (not a nil pointer in the interface) when this process runs no
	// engine: task reads still work, task writes answer 503.
	Engine Engine
	// Revoker is told when a device's credentials stop being valid
	// (deleted, secret rotated), before the API answers; nil tells nobody.
	Revoker Revoker
	// Accounts, with an external broker that keeps device credentials
	// (docs/cluster.md), gets every device created, rotated or deleted
	// before the API answers; nil means the registry alone holds them.
	Accounts brokeradmin.Provisioner
	// Secrets seals the secrets of devices of EnOS products (their login
	// needs the secret itself); nil keeps hashes only, and such devices
	// cannot log in with EnOS's protocol.
	Secrets *credential.Box
	// Info describes the server at GET /api/v1/server.
	Info ServerInfo
	// Replicas lists the replicas at GET /api/v1/server; nil lists none.
	Replicas func(ctx context.Context) ([]Replica, error)
	// Reads, when set, counts the GET and HEAD requests in flight, which
	// the engine's job starts let go first (engine.Config.Reads).
	Reads *priority.Reads
}

// API is the operator REST API.
type API struct {
	store       store.Store
	blobs       blob.Store
	signer      *signing.Signer
	engine      Engine
	replicas    func(ctx context.Context) ([]Replica, error)
	revoke      Revoker
	accounts    brokeradmin.Provisioner
	secrets     *credential.Box
	info        ServerInfo
	log         *slog.Logger
	maxFirmware int64
	reads       *priority.Reads

	router  chi.Router
	huma    huma.API
	metrics *metrics
	spec    []byte // the OpenAPI document, encoded once
}

// New builds the API and registers its routes and metrics.
func New(cfg Config) (*API, error) {
	if cfg.Store == nil || cfg.Blobs == nil || cfg.Signer == nil {
		return nil, errors.New("api: Config needs Store, Blobs and Signer")
	}
	a := &API{
		store: cfg.Store, blobs: cfg.Blobs, signer: cfg.Signer, engine: cfg.Engine, revoke: cfg.Revoker, accounts: cfg.Accounts, secrets: cfg.Secrets, info: cfg.Info, replicas: cfg.Replicas,
		log: cfg.Logger, maxFirmware: cfg.MaxFirmwareSize, reads: cfg.Reads,
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.revoke == nil {
		a.revoke = noRevoker{}
	}
	if a.maxFirmware <= 0 {
		a.maxFirmware = DefaultMaxFirmwareSize
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	a.metrics = m
	if err := a.build(); err != nil {
		return nil, err
	}
	return a, nil
}

// Handler returns the handler of every path under /api/v1; other paths
// answer 404.
func (a *API) Handler() http.Handler { return a.router }

func (a *API) build() error {
	a.router = chi.NewRouter()
	a.router.Use(a.metrics.middleware, a.reads.Middleware)
	a.router.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, newProblem(http.StatusNotFound, "", fmt.Sprintf("no such path: %s %s", r.Method, r.URL.Path)))
	})
	a.router.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, newProblem(http.StatusMethodNotAllowed, "",
			fmt.Sprintf("method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, w.Header().Get("Allow"))))
	})
	a.huma = humachi.New(a.router, humaConfig())
	a.huma.UseMiddleware(a.authorize)
	a.routes()
	return a.finishSpec()
}

// humaConfig is huma's default configuration without the $schema links it
// adds to response bodies (clients get exactly the ota types), without
// the documentation page, which loads scripts from a CDN, and with the
// pages of the largest lists encoded without reflection (jsonFormat).
func humaConfig() huma.Config {
	c := huma.DefaultConfig("otter operator API", "1.0.0")
	c.CreateHooks = nil
	c.DocsPath = ""
	c.SchemasPath = ""
	c.OpenAPIPath = "" // served by serveSpec, encoded once at start
	c.Info.Description = "Manage products, devices, firmware, upgrade tasks and operator tokens. " +
		"Send `Authorization: Bearer <token>`; each operation names the role it needs."
	c.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		securityScheme: {Type: "http", Scheme: "bearer", Description: "An operator API token (otr_...)."},
	}
	c.Transformers = []huma.Transformer{problemTransformer}
	c.Formats = maps.Clone(c.Formats)
	c.Formats["application/json"], c.Formats["json"] = jsonFormat, jsonFormat
	return c
}

func (a *API) routes() {
	a.signingKeyRoutes()
	a.serverRoutes()
	a.productRoutes()
	a.deviceRoutes()
	a.importRoutes()
	a.firmwareRoutes()
	a.uploadRoutes()
	a.tokenRoutes()
	a.eventRoutes()
	a.taskRoutes()
	a.exportRoutes()
	a.router.Get(Prefix+"/openapi.json", a.serveSpec)
}

// finishSpec points every error response at the Problem schema and encodes
// the document once, so serving it is a plain write.
func (a *API) finishSpec() error {
	documentProblems(a.huma.OpenAPI())
	b, err := json.Marshal(a.huma.OpenAPI())
	if err != nil {
		return fmt.Errorf("api: encode OpenAPI document: %w", err)
	}
	a.spec = b
	return nil
}

func (a *API) serveSpec(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/openapi+json")
	w.Write(a.spec)
}
