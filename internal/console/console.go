// Package console serves otter's web console: the operator's view of the
// fleet, the firmware and every rollout. Pages are rendered on the server
// with html/template; the live parts (a task's progress, the preview of a
// new task) are refreshed by a vendored htmx, and everything, scripts and
// styles included, is embedded in the binary, so the console never asks an
// outside host for anything.
//
// Reads go straight to the store. Every change (products, devices,
// firmware, tasks) goes through the operator REST API's client, served
// in-process with the signed-in token, so it passes exactly the
// validation, role checks and history of the API: the console never
// decides what a role may do, it only hides what it may not.
package console

import (
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/store"
)

// Config is what the console needs; Store and API are required.
type Config struct {
	Store store.Store
	// API is the operator REST API's handler (api.API.Handler()), serving
	// /api/v1/...: the console sends every change through it, and what a
	// task waits for, with the signed-in operator's token.
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
	cfg   Config
	store store.Store
	api   http.Handler
	log   *slog.Logger
	now   func() time.Time
	pages *pages
	stats *statsCache
	mux   *http.ServeMux
	// origin refuses cross-origin posts (CSRF); its zero value trusts no
	// other origin.
	origin http.CrossOriginProtection

	keyMu       sync.Mutex
	sessionKeys *sessionKeys // loaded from the store on first use
}

// New builds the console and parses its templates.
func New(cfg Config) (*Console, error) {
	if cfg.Store == nil || cfg.API == nil {
		return nil, errors.New("console: Config needs Store and API")
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
		cfg: cfg, store: cfg.Store, api: cfg.API,
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

// routes maps every page and action. Pages and actions need a signed-in
// operator; actions refuse cross-origin posts.
func (c *Console) routes(static http.Handler) *http.ServeMux {
	m := http.NewServeMux()
	m.Handle("GET /static/", static)
	for _, rt := range c.routeTable() {
		m.HandleFunc(rt.pattern, rt.handler)
	}
	return m
}

// routeTable lists every route but the static files; a test posts to each
// state-changing one from another origin.
func (c *Console) routeTable() []route {
	return []route{
		{"GET /signin", c.signinForm},
		{"POST /signin", c.signin},
		{"POST /signout", c.action(c.signout)},
		{"GET /{$}", c.view(c.overview)},
		{"GET /overview/tasks", c.view(c.overviewTasks)},

		{"GET /products", c.view(c.products)},
		{"POST /products", c.action(c.createProduct)},
		{"GET /products/{product}", c.view(c.product)},
		{"POST /products/{product}/delete", c.action(c.deleteProduct)},
		{"POST /products/{product}/devices", c.action(c.createDevice)},
		{"POST /products/{product}/import", c.streamed(c.importDevices)},
		{"GET /products/{product}/devices/{device}", c.view(c.device)},
		{"POST /products/{product}/devices/{device}/tags", c.action(c.setTags)},
		{"POST /products/{product}/devices/{device}/rotate-secret", c.action(c.rotateSecret)},
		{"POST /products/{product}/devices/{device}/delete", c.action(c.deleteDevice)},

		{"GET /firmware", c.view(c.firmwareList)},
		{"GET /firmware/upload", c.view(c.uploadForm)},
		{"POST /firmware/upload", c.streamed(c.upload)},
		{"GET /firmware/{id}", c.view(c.firmware)},
		{"GET /firmware/{id}/file", c.view(c.firmwareFile)},
		{"POST /firmware/{id}/delete", c.action(c.deleteFirmware)},
		{"POST /firmware/{id}/deprecate", c.action(c.deprecateFirmware)},

		{"GET /tasks", c.view(c.tasks)},
		{"GET /tasks/new", c.view(c.newTask)},
		{"POST /tasks/preview", c.action(c.previewTask)},
		{"POST /tasks", c.action(c.createTask)},
		{"GET /tasks/{id}", c.view(c.task)},
		{"GET /tasks/{id}/live", c.view(c.taskLiveFragment)},
		{"POST /tasks/{id}/policy", c.action(c.updatePolicy)},
		{"GET /tasks/{id}/jobs.csv", c.view(c.taskJobsCSV)},
		{"POST /tasks/{id}/{action}", c.action(c.taskAction)},

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
