package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otter-ota/otter/internal/api"
	"github.com/otter-ota/otter/internal/brokerclient"
	"github.com/otter-ota/otter/internal/deadline"
	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/leader"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/signing"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/sdk/wire"
)

// Replicas. Every otter process on one database is a replica: all serve
// reads, downloads and the console; one at a time (the leader, chosen by
// leader.Elector) runs the rollout engine, and the others forward to it
// whatever needs the engine. See docs/cluster.md, "Replicas".
const (
	// heartbeatEvery is how often a replica refreshes its row and learns
	// which replica leads.
	heartbeatEvery = 2 * time.Second
	// aloneHeartbeatEvery is the same for the one process of a SQLite
	// database, whose row only tells GET /api/v1/server when it last beat:
	// every write to SQLite empties the page cache of each reading
	// connection, which a list then refills page by page.
	aloneHeartbeatEvery = time.Minute
	// goneAfter is how many heartbeat periods old a heartbeat may be before
	// the replica is shown as gone (and no longer forwarded to).
	goneAfter = 3
	// pruneAfter is how long a gone replica is still listed.
	pruneAfter = 10 * time.Minute
	// forwardedHeader marks a request one replica forwarded to another, so
	// that two replicas that each think the other leads answer 503 rather
	// than pass it back and forth.
	forwardedHeader = "X-Otter-Forwarded-By"
	// retryAfter is what a client is told to wait while no leader is known.
	retryAfter = "2"
	// signingKeySetting records the cluster's signing public key.
	signingKeySetting = "signing_public_key"
)

// cluster is a replica's part in the cluster.
type cluster struct {
	id        string
	started   time.Time
	elector   leader.Elector
	beatEvery time.Duration // how often this replica beats
	engines   engineRef
	ext       atomic.Pointer[brokerclient.Client] // the term's external broker client
	extMu     sync.Mutex                          // held while ext is closed
	extM      *brokerclient.Metrics               // every term's ext counts into them
	leading   atomic.Bool
	since     atomic.Pointer[time.Time] // when this replica took the lead
	leaderURL atomic.Pointer[string]    // the leader's advertised URL, "" unknown
	gauge     prometheus.Gauge
	proxy     *httputil.ReverseProxy
	// stop ends the leadership and heartbeat loops; done closes when both
	// have ended (the engine stopped).
	stop context.CancelFunc
	done sync.WaitGroup
}

func newReplicaID() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	if host == "" {
		host = "otter"
	}
	return host + "-" + hex.EncodeToString(b)
}

// elector returns how this server takes the lead: PostgreSQL's lock, or at
// once for SQLite, which one process serves.
func (s *Server) elector() leader.Elector {
	if s.dbKind() == "postgres" {
		return &leader.Postgres{URL: s.cfg.DBURL, Logger: s.log}
	}
	return leader.Always{}
}

func (s *Server) initCluster() error {
	c := &s.cluster
	c.id, c.started, c.elector = newReplicaID(), time.Now(), s.elector()
	c.beatEvery = heartbeatEvery
	if _, alone := c.elector.(leader.Always); alone {
		c.beatEvery = aloneHeartbeatEvery
	}
	c.leaderURL.Store(new(string))
	c.gauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "otter_scheduler_leader",
		Help: "1 when this replica runs the rollout engine (schedules), 0 when it forwards to the one that does.",
	})
	if err := s.reg.Register(c.gauge); err != nil {
		return err
	}
	if s.cfg.Broker != "" {
		m, err := brokerclient.NewMetrics(s.reg)
		if err != nil {
			return err
		}
		c.extM = m
	}
	c.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			target, _ := url.Parse(*c.leaderURL.Load())
			r.SetURL(target)
			r.Out.Host = r.In.Host
			r.Out.Header.Set(forwardedHeader, c.id)
			r.SetXForwarded()
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.log.Warn("the scheduling replica does not answer", "url", *c.leaderURL.Load(), "err", err)
			unavailable(w, "the scheduling replica does not answer; try again")
		},
	}
	return nil
}

// advertiseURL is where the other replicas reach this one.
func (s *Server) advertiseURL() string {
	if s.cfg.AdvertiseURL != "" {
		return strings.TrimRight(s.cfg.AdvertiseURL, "/")
	}
	return s.HTTPURL()
}

// startCluster starts the heartbeat and the leadership loop. A process
// alone by construction (SQLite) leads before Start returns, as does a
// replica that finds the lock free, so that a lone server serves task
// writes as soon as it is up.
func (s *Server) startCluster(ctx context.Context, e engine.Config) error {
	c := &s.cluster
	loops, stop := context.WithCancel(context.WithoutCancel(ctx))
	c.stop = stop
	if err := s.heartbeat(ctx); err != nil {
		return err
	}
	held, release, err := c.elector.Campaign(loops, false)
	if err != nil && !errors.Is(err, leader.ErrNotLeader) {
		stop()
		return err
	}
	var first chan error
	if err == nil {
		s.fence(loops, held)
		if first, err = s.beginTerm(held, e); err != nil {
			release()
			stop()
			return err
		}
	}
	c.done.Add(2)
	go func() {
		defer c.done.Done()
		s.lead(loops, e, held, release, first)
	}()
	go func() {
		defer c.done.Done()
		t := time.NewTicker(c.beatEvery)
		defer t.Stop()
		for {
			select {
			case <-loops.Done():
				return
			case <-t.C:
				if err := s.heartbeat(loops); err != nil && loops.Err() == nil {
					s.log.Warn("replica heartbeat failed", "err", err)
				}
			}
		}
	}()
	return nil
}

// lead runs terms of leadership one after another until ctx ends: a term
// ends when the lock is lost or the engine fails, and the replica then
// campaigns again (a PostgreSQL restart ends the term of every replica;
// the first to reconnect leads).
func (s *Server) lead(ctx context.Context, e engine.Config, held context.Context, release func(), run chan error) {
	for {
		if run != nil {
			s.endTerm(held, run)
			release()
		}
		run = nil
		var err error
		held, release, err = s.cluster.elector.Campaign(ctx, true)
		if err != nil {
			return // ctx ended
		}
		s.fence(ctx, held)
		if held.Err() == nil {
			run, err = s.beginTerm(held, e)
			if err != nil {
				s.log.Error("could not start the rollout engine; giving up the lead", "err", err)
			}
		}
		if run == nil {
			release()
			select {
			case <-ctx.Done():
				return
			case <-time.After(s.cluster.beatEvery):
			}
		}
	}
}

// fence waits, when the previous leader may be alive and not know yet
// that it lost its lock, for the time it takes to notice and stop its
// engine, so that it has stopped writing before this replica starts.
func (s *Server) fence(ctx context.Context, held context.Context) {
	f, ok := s.cluster.elector.(interface{ FenceWithin() time.Duration })
	if !ok || !s.otherLeaderMayLive(ctx, f.FenceWithin()) {
		return
	}
	s.log.Info("waiting for the previous scheduling replica to stop", "for", f.FenceWithin())
	select {
	case <-held.Done():
	case <-time.After(f.FenceWithin()):
	}
}

// otherLeaderMayLive reports whether another replica said it led within
// the last fence period.
func (s *Server) otherLeaderMayLive(ctx context.Context, fence time.Duration) bool {
	rs, err := s.store.Replicas(ctx, time.Now().Add(-fence-s.cluster.beatEvery))
	if err != nil {
		return true
	}
	for _, r := range rs {
		if r.ID != s.cluster.id && !r.LeadingSince.IsZero() {
			return true
		}
	}
	return false
}

// beginTerm starts a rollout engine, and the external broker's client,
// that run until held ends. The engine rebuilds its state from the store,
// as at a restart.
func (s *Server) beginTerm(held context.Context, cfg engine.Config) (chan error, error) {
	if err := s.resetPresence(held); err != nil {
		return nil, err
	}
	relay := &downlinkRelay{to: cfg.Downlink}
	cfg.Downlink = relay
	e, err := engine.New(cfg)
	if err != nil {
		return nil, err
	}
	if s.cfg.Broker != "" {
		ext, err := s.dialBroker(held, e)
		if err != nil {
			return nil, err
		}
		relay.to = ext
		s.cluster.ext.Store(ext)
	}
	// At a clean stop the external broker's client stops before the
	// engine, so that the uplinks it holds are stored and acknowledged. A
	// lost lock stops the engine at once (fence): those uplinks then stay
	// unacknowledged in the broker's session, which the next leader takes
	// over under the same client id.
	engineCtx, stopEngine := context.WithCancel(context.WithoutCancel(held))
	run := make(chan error, 1)
	go func() {
		select {
		case <-held.Done():
		case <-engineCtx.Done():
		}
		if s.closing.Load() {
			s.closeExt()
		}
		stopEngine()
		s.closeExt()
	}()
	go func() {
		defer stopEngine()
		run <- e.Run(engineCtx)
	}()
	s.takeLead(held, e)
	return run, nil
}

// resetPresence marks every device offline at the start of a term with the
// embedded broker: devices marked online were connected to the embedded
// broker of a previous leader (or of this process before a crash), and
// none is connected here yet, as no broker takes device messages without
// an engine. (An external broker's presence comes from wills.)
func (s *Server) resetPresence(ctx context.Context) error {
	if s.cfg.Broker != "" {
		return nil
	}
	n, err := s.store.MarkAllOffline(ctx)
	if err != nil {
		return fmt.Errorf("reset device presence: %w", err)
	}
	if n > 0 {
		s.log.Info("devices marked offline until they reconnect", "devices", n)
	}
	return nil
}

// takeLead makes e the engine every surface reaches and says so: in the log,
// the metric and the replica's heartbeat row.
func (s *Server) takeLead(held context.Context, e *engine.Engine) {
	now := time.Now()
	c := &s.cluster
	c.since.Store(&now)
	c.engines.set(e)
	c.leading.Store(true)
	c.gauge.Set(1)
	s.log.Info("this replica schedules: the rollout engine runs here", "replica", c.id)
	if err := s.heartbeat(held); err != nil {
		s.log.Warn("replica heartbeat failed", "err", err)
	}
}

// endTerm waits until the lead is lost (or the engine stops by itself),
// then fences: nothing reaches the engine any more, devices connected here
// are sent away, and the engine is stopped before the lock is released.
func (s *Server) endTerm(held context.Context, run chan error) {
	var err error
	select {
	case <-held.Done():
		err = <-run
	case err = <-run:
	}
	c := &s.cluster
	c.leading.Store(false)
	s.closeExt()
	c.engines.set(nil)
	c.since.Store(nil)
	c.gauge.Set(0)
	if s.broker != nil {
		s.broker.DisconnectAll()
	}
	if err != nil {
		s.log.Error("the rollout engine stopped", "err", err)
	}
	if held.Err() != nil && s.closing.Load() {
		return
	}
	s.log.Warn("this replica no longer schedules", "replica", c.id)
}

// heartbeat writes this replica's row and reads which replica leads.
func (s *Server) heartbeat(ctx context.Context) error {
	c := &s.cluster
	r := store.Replica{ID: c.id, URL: s.advertiseURL(), Version: Version, StartedAt: c.started}
	if since := c.since.Load(); since != nil {
		r.LeadingSince = *since
	}
	if _, err := s.store.Heartbeat(ctx, r); err != nil {
		return err
	}
	if _, err := s.findLeader(ctx); err != nil {
		return err
	}
	return s.store.PruneReplicas(ctx, time.Now().Add(-pruneAfter), "")
}

// findLeader reads which replica leads and remembers its URL ("": none).
func (s *Server) findLeader(ctx context.Context) (string, error) {
	rs, err := s.store.Replicas(ctx, time.Now().Add(-goneAfter*s.cluster.beatEvery))
	if err != nil {
		return "", err
	}
	leaderURL := ""
	if len(rs) > 0 && !rs[0].LeadingSince.IsZero() {
		leaderURL = rs[0].URL
	}
	s.cluster.leaderURL.Store(&leaderURL)
	return leaderURL, nil
}

// replicas lists the replicas for GET /api/v1/server.
func (s *Server) replicas(ctx context.Context) ([]api.Replica, error) {
	rs, err := s.store.Replicas(ctx, time.Now().Add(-pruneAfter))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := make([]api.Replica, 0, len(rs))
	for i, r := range rs {
		gone := now.Sub(r.HeartbeatAt) > goneAfter*s.cluster.beatEvery
		var since *time.Time
		if i == 0 && !r.LeadingSince.IsZero() && !gone {
			since = &r.LeadingSince
		}
		out = append(out, api.Replica{SchedulingSince: since,
			ID: r.ID, URL: r.URL, Version: r.Version, StartedAt: r.StartedAt, Heartbeat: r.HeartbeatAt,
			// Only the newest leader row that is alive schedules: an
			// older one is a leader that died before it could clear it.
			Scheduling: since != nil,
			This:       r.ID == s.cluster.id,
			Gone:       gone,
		})
	}
	return out, nil
}

// forward sends what needs the engine (API writes, the device HTTP API)
// to the scheduling replica when this one does not schedule.
func (s *Server) forward(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cluster.leading.Load() || !needsEngine(r) {
			next.ServeHTTP(w, r)
			return
		}
		if r.Header.Get(forwardedHeader) != "" {
			unavailable(w, "this replica no longer schedules; try again")
			return
		}
		if *s.cluster.leaderURL.Load() == "" {
			// A leader may have come since the last heartbeat: look.
			if u, err := s.findLeader(r.Context()); err != nil || u == "" {
				unavailable(w, "no replica schedules at the moment (one takes over within seconds); try again")
				return
			}
		}
		// A forwarded body may be a firmware file: the transfer policy
		// (progress, not a fixed deadline) applies, as on the leader.
		s.cluster.proxy.ServeHTTP(deadline.Transfer(w, r), r)
	})
}

func needsEngine(r *http.Request) bool {
	if strings.HasPrefix(r.URL.Path, "/device/") {
		return true
	}
	if !strings.HasPrefix(r.URL.Path, "/api/") {
		return false
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// unavailable answers 503 with Retry-After, as a problem (the API's) or a
// wire error (the device API's): both carry a code and a message.
func unavailable(w http.ResponseWriter, msg string) {
	w.Header().Set("Retry-After", retryAfter)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"status": http.StatusServiceUnavailable, "title": "Service Unavailable", "detail": msg,
		"code": wire.CodeUnavailable, "message": msg,
	})
}

// checkSigningKey refuses a replica whose signing key is not the one the
// cluster signs with: devices would refuse its commands.
func (s *Server) checkSigningKey(ctx context.Context, signer *signing.Signer) error {
	mine := base64.StdEncoding.EncodeToString(signer.PublicKey())
	stored, err := s.store.InitSetting(ctx, signingKeySetting, mine)
	if err != nil {
		return fmt.Errorf("record the signing key: %w", err)
	}
	if stored != mine {
		return fmt.Errorf("the signing key (--signing-key, or signing.key in --data) is not the one this database's other replicas sign with "+
			"(public key %s; this one's is %s): every replica must use the same key file, or devices would refuse its commands", stored, mine)
	}
	return nil
}

// replacing registers a collector in place of an earlier one of the same
// name: every term's engine registers its metrics anew.
type replacing struct{ *prometheus.Registry }

func (r replacing) Register(c prometheus.Collector) error {
	r.Registry.Unregister(c)
	return r.Registry.Register(c)
}

func (r replacing) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// engineRef is the engine of the current term, or none: the API, the device
// HTTP API and the broker hold it rather than an engine, which changes with
// every term. Without an engine every call is refused as unavailable.
type engineRef struct {
	mu sync.RWMutex
	e  *engine.Engine
}

func (r *engineRef) set(e *engine.Engine) {
	r.mu.Lock()
	r.e = e
	r.mu.Unlock()
}

func (r *engineRef) get() (*engine.Engine, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.e == nil {
		return nil, ota.Errorf(ota.EUNAVAILABLE, "this replica does not schedule at the moment; try again")
	}
	return r.e, nil
}

var (
	_ api.Engine     = (*engineRef)(nil)
	_ engine.Devices = (*engineRef)(nil)
)

// forgetReplica deletes this replica's row at a clean stop: it is not
// listed as gone.
func (s *Server) forgetReplica(ctx context.Context) error {
	if err := s.store.PruneReplicas(ctx, time.Now().Add(-pruneAfter), s.cluster.id); err != nil {
		return fmt.Errorf("remove this replica from the list: %w", err)
	}
	return nil
}

// closeExt closes the term's external broker client. At a clean stop it
// unsubscribes, then finishes (stores and acknowledges) the uplinks it
// holds. A replica that lost the lead abandons the session instead: the
// next leader takes it over, with what it holds. It returns only once the
// client is gone (whichever caller closes it), so that a next term on this
// replica never connects under the same client id beside it: the broker
// would make the two take the session from each other in turns.
func (s *Server) closeExt() {
	s.cluster.extMu.Lock()
	defer s.cluster.extMu.Unlock()
	ext := s.cluster.ext.Swap(nil)
	if ext == nil {
		return
	}
	if !s.closing.Load() {
		if err := ext.Abandon(); err != nil {
			s.log.Warn("disconnect from the external MQTT broker", "err", err)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ext.Close(ctx); err != nil {
		s.log.Warn("close the external MQTT broker client", "err", err)
	}
}
