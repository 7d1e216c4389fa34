// Package console serves otter's web console: the operator's view of the
// fleet, the firmware and every rollout. Pages are rendered on the server
// with html/template; the live parts (a task's progress, the preview of a
// new task) are refreshed by a vendored htmx, and everything, scripts and
// styles included, is embedded in the binary, so the console never asks an
// outside host for anything.
//
// Reads go straight to the store. Changes to products, devices and firmware
// go through the operator REST API, served in-process with the signed-in
// token, so they pass exactly the validation, role checks and history of
// the API; task actions go to the rollout engine (the API has no task
// routes yet), after the console checks the role itself.
package console

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

// Engine is what the console needs from the rollout engine.
type Engine interface {
	// Plan resolves a task spec into the devices it would target without
	// creating anything.
	Plan(ctx context.Context, spec engine.TaskSpec) (engine.Preview, error)
	CreateTask(ctx context.Context, spec engine.TaskSpec) (ota.Task, error)
	Pause(ctx context.Context, id int64) (ota.Task, error)
	Resume(ctx context.Context, id int64) (ota.Task, error)
	Cancel(ctx context.Context, id int64) (ota.Task, error)
	// Advance releases the next phase of a task with a manual gate.
	Advance(ctx context.Context, id int64) (ota.Task, error)
	// RetryFailed requeues a task's failed and timed-out jobs and returns
	// how many it requeued.
	RetryFailed(ctx context.Context, id int64) (ota.Task, int, error)
	// Waiting says what a task held by its policy waits for (nil: not held).
	Waiting(id int64) *ota.Waiting
	// UpdatePolicy changes a task's policy by a JSON merge patch.
	UpdatePolicy(ctx context.Context, id int64, patch map[string]json.RawMessage) (ota.Task, error)
	// RetryFailedDevices and CancelDevices act on the jobs of the given
	// devices only, and return how many they changed.
	RetryFailedDevices(ctx context.Context, id int64, devices []string) (ota.Task, int, error)
	CancelDevices(ctx context.Context, id int64, devices []string) (ota.Task, int, error)
}

// Config is what the console needs; Store, Engine and API are required.
type Config struct {
	Store  store.Store
	Engine Engine
	// API is the operator REST API's handler (api.API.Handler()), serving
	// /api/v1/...: the console sends changes and firmware uploads through
	// it with the signed-in operator's token.
	API    http.Handler
	Logger *slog.Logger
	// SessionTTL is how long a sign-in lasts; 0 means 12 hours.
	SessionTTL time.Duration
	// StatsTTL is how long fleet aggregates are cached; 0 means 15 seconds.
	StatsTTL time.Duration
	// SecureCookies marks cookies Secure even on plain HTTP requests, for a
	// console behind a TLS-terminating proxy. Cookies of TLS requests are
	// always Secure.
	SecureCookies bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Defaults for the zero Config fields.
const (
	DefaultSessionTTL = 12 * time.Hour
	DefaultStatsTTL   = 15 * time.Second
)

// Console is the web console. Create it with New and serve Handler.
type Console struct {
	cfg    Config
	store  store.Store
	engine Engine
	api    http.Handler
	log    *slog.Logger
	now    func() time.Time
	pages  *pages
	stats  *statsCache
	mux    *http.ServeMux

	keyMu       sync.Mutex
	sessionKeys *sessionKeys // loaded from the store on first use
}

// New builds the console and parses its templates.
func New(cfg Config) (*Console, error) {
	if cfg.Store == nil || cfg.Engine == nil || cfg.API == nil {
		return nil, errors.New("console: Config needs Store, Engine and API")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.StatsTTL <= 0 {
		cfg.StatsTTL = DefaultStatsTTL
	}
	p, err := loadPages()
	if err != nil {
		return nil, err
	}
	c := &Console{
		cfg: cfg, store: cfg.Store, engine: cfg.Engine, api: cfg.API,
		log: cfg.Logger, now: cfg.Now, pages: p,
	}
	c.stats = newStatsCache(cfg.Store, cfg.StatsTTL, cfg.Now, cfg.Logger)
	static, err := staticHandler()
	if err != nil {
		return nil, err
	}
	c.mux = c.routes(static)
	return c, nil
}

// route is one pattern of the console's mux.
type route struct {
	pattern string
	handler http.HandlerFunc
}

// routes maps every page and action. Pages need a signed-in viewer;
// actions name the role they need and check the CSRF token.
func (c *Console) routes(static http.Handler) *http.ServeMux {
	m := http.NewServeMux()
	m.Handle("GET /static/", static)
	for _, rt := range c.routeTable() {
		m.HandleFunc(rt.pattern, rt.handler)
	}
	return m
}

// routeTable lists every route but the static files; a test posts to each
// state-changing one without a CSRF token.
func (c *Console) routeTable() []route {
	op := ota.RoleOperator
	return []route{
		{"GET /signin", c.signinForm},
		{"POST /signin", c.signin},
		{"POST /signout", c.action(ota.RoleViewer, c.signout)},
		{"GET /{$}", c.view(c.overview)},
		{"GET /overview/tasks", c.view(c.overviewTasks)},

		{"GET /products", c.view(c.products)},
		{"POST /products", c.action(op, c.createProduct)},
		{"GET /products/{product}", c.view(c.product)},
		{"POST /products/{product}/delete", c.action(op, c.deleteProduct)},
		{"POST /products/{product}/devices", c.action(op, c.createDevice)},
		{"POST /products/{product}/import", c.streamed(op, c.importDevices)},
		{"GET /products/{product}/devices/{device}", c.view(c.device)},
		{"POST /products/{product}/devices/{device}/tags", c.action(op, c.setTags)},
		{"POST /products/{product}/devices/{device}/rotate-secret", c.action(op, c.rotateSecret)},
		{"POST /products/{product}/devices/{device}/delete", c.action(op, c.deleteDevice)},

		{"GET /firmware", c.view(c.firmwareList)},
		{"GET /firmware/upload", c.view(c.uploadForm)},
		{"POST /firmware/upload", c.scripted(op, c.upload)},
		{"GET /firmware/{id}", c.view(c.firmware)},
		{"GET /firmware/{id}/file", c.view(c.firmwareFile)},
		{"POST /firmware/{id}/delete", c.action(op, c.deleteFirmware)},
		{"POST /firmware/{id}/deprecate", c.action(op, c.deprecateFirmware)},

		{"GET /tasks", c.view(c.tasks)},
		{"GET /tasks/new", c.view(c.newTask)},
		{"POST /tasks/preview", c.action(op, c.previewTask)},
		{"POST /tasks", c.action(op, c.createTask)},
		{"GET /tasks/{id}", c.view(c.task)},
		{"GET /tasks/{id}/live", c.view(c.taskLiveFragment)},
		{"POST /tasks/{id}/policy", c.action(op, c.updatePolicy)},
		{"GET /tasks/{id}/jobs.csv", c.view(c.taskJobsCSV)},
		{"POST /tasks/{id}/{action}", c.action(op, c.taskAction)},

		{"GET /events", c.view(c.events)},
		{"/", c.view(c.notFound)},
	}
}

// Handler returns the console's handler; mount it at "/".
func (c *Console) Handler() http.Handler { return c.mux }

// client returns an API client that acts with the session's token and
// reaches the API in-process.
func (c *Console) client(s *session) *client.Client {
	return client.New("http://console.internal", s.token,
		client.WithHTTPClient(&http.Client{Transport: handlerTransport{c.api}}),
		client.WithUserAgent("otter-console"))
}
