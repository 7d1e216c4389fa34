package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/otter-ota/otter/internal/brokeradmin"
	"github.com/otter-ota/otter/internal/brokeradmin/dynsec"
	"github.com/otter-ota/otter/internal/mosquitto"
	"github.com/otter-ota/otter/internal/server"
)

// cluster is otter in cluster mode on this machine: a private Mosquitto
// with the dynamic security plugin, replicas in processes of their own on
// one PostgreSQL schema and one data folder (the shared volume of the
// firmware files and the signing key), and a round-robin load balancer in
// this process in front of their HTTP listeners, as nginx or HAProxy
// would be in production: download URLs name it, so downloads spread over
// the replicas and survive a replica's death.
type cluster struct {
	broker   *mosquitto.Broker
	brokerTo string // the broker's folder, removed at close
	lb       *http.Server
	lbURL    string
	replicas []*replica
	next     atomic.Uint64 // round robin
	// seed says the replicas start without --broker-admin, until the
	// accounts are seeded (AccountsSeed).
	seed bool
}

// replica is one `otter bench server` process of the cluster, which can be
// killed and started again.
type replica struct {
	name  string
	exe   string
	args  []string
	token string
	opts  ServerOptions

	mu    sync.Mutex
	cmd   *exec.Cmd
	url   string
	alive bool
}

// startCluster starts the broker, the load balancer and the replicas; the
// first replica started takes the lead.
func startCluster(ctx context.Context, opts ServerOptions, token string) (*Server, error) {
	c := &cluster{seed: opts.seedsAccounts()}
	dir, err := os.MkdirTemp("", "otter-bench-mosquitto-")
	if err != nil {
		return nil, fmt.Errorf("make the broker's folder: %w", err)
	}
	c.brokerTo = dir
	if c.broker, err = mosquitto.Start(dir, mosquitto.Options{Quiet: true, DieWithParent: true, Config: mosquitto.TunedForOtter}); err != nil {
		return nil, errors.Join(err, c.close())
	}
	if err := c.startBalancer(); err != nil {
		return nil, errors.Join(err, c.close())
	}
	clientID := "otter-bench-" + randomHex(6)
	// The list is made before any replica starts: the load balancer reads
	// it without a lock.
	for i := range opts.Replicas {
		args := append(opts.serveArgs(), "--broker", c.broker.AdminURL(), "--broker-client-id", clientID, "--public-url", c.lbURL)
		if !c.seed {
			args = append(args, brokerAdminArgs...)
		}
		c.replicas = append(c.replicas, &replica{
			name: "replica " + strconv.Itoa(i+1), exe: opts.Executable, token: token, opts: opts, args: args,
		})
	}
	for _, r := range c.replicas {
		if err := r.start(ctx); err != nil {
			return nil, errors.Join(fmt.Errorf("%s: %w", r.name, err), c.close())
		}
	}
	return &Server{
		HTTPURL: c.lbURL, MQTTURL: "tcp://" + c.broker.Addr, Token: token, PID: c.replicas[0].pid(),
		Separate: true, DBURL: opts.DBURL, close: c.close, cluster: c,
	}, nil
}

// brokerAdminArgs have a replica keep the devices' accounts in the
// broker, as in production.
var brokerAdminArgs = []string{"--broker-admin", server.BrokerAdminDynsec}

// checkSeeded runs otter's Sync on the seeded broker and fails if it
// changed anything: the seeded accounts must be the ones otter makes.
func (c *cluster) checkSeeded(ctx context.Context, accounts []brokeradmin.Want) error {
	a, err := dynsec.Dial(ctx, dynsec.Config{URL: c.broker.URL(), Username: mosquitto.AdminUser, Password: mosquitto.AdminPassword})
	if err != nil {
		return err
	}
	defer a.Close()
	rep, err := a.Sync(ctx, accounts)
	switch {
	case err != nil:
		return fmt.Errorf("sync after seeding: %w", err)
	case rep.Changed():
		return fmt.Errorf("sync after seeding changed the accounts (created %d, repaired %d, deleted %d, roles %v): the seeded accounts are not otter's",
			len(rep.Created), len(rep.Repaired), len(rep.Deleted), rep.Roles)
	}
	return nil
}

// seedAccounts writes accounts into the broker's dynamic security file
// (with otter's service role for the admin user the replicas connect as)
// and restarts the broker and the replicas, these with --broker-admin:
// the plugin reads its file only at start, and rewrites it after any
// command. The replicas are stopped first, so none loses its broker
// connection under way.
func (c *cluster) seedAccounts(ctx context.Context, accounts []brokeradmin.Want) error {
	for _, r := range c.replicas {
		if err := r.stop(); err != nil {
			return err
		}
	}
	c.broker.Kill()
	if err := dynsec.SeedFile(c.broker.DynsecFile(), accounts, mosquitto.AdminUser); err != nil {
		return err
	}
	if err := c.broker.Resume(); err != nil {
		return err
	}
	for _, r := range c.replicas {
		r.args = append(r.args, brokerAdminArgs...)
		if err := r.start(ctx); err != nil {
			return fmt.Errorf("%s with --broker-admin: %w", r.name, err)
		}
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startBalancer serves the load balancer on a free port of 127.0.0.1.
func (c *cluster) startBalancer() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("the load balancer: %w", err)
	}
	c.lbURL = "http://" + ln.Addr().String()
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost, t.MaxIdleConns = 1024, 1024
	proxy := &httputil.ReverseProxy{
		Transport: nextUpstream{c: c, rt: t},
		Rewrite: func(pr *httputil.ProxyRequest) {
			if u := c.pick(); u != nil {
				pr.SetURL(u)
			}
			pr.Out.Host = pr.In.Host
		},
	}
	c.lb = &http.Server{Handler: proxy, ReadHeaderTimeout: time.Minute}
	go func() { _ = c.lb.Serve(ln) }()
	return nil
}

// nextUpstream sends a GET or HEAD whose replica failed to answer to the
// next running replica, as nginx does by default (proxy_next_upstream
// error timeout): a download that reached a replica as it was killed is
// not the devices' failure. Other requests are not repeated.
type nextUpstream struct {
	c  *cluster
	rt http.RoundTripper
}

func (n nextUpstream) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := n.rt.RoundTrip(req)
	if err == nil || (req.Method != http.MethodGet && req.Method != http.MethodHead) {
		return resp, err
	}
	tried := map[string]bool{req.URL.Host: true}
	for range len(n.c.replicas) {
		if req.Context().Err() != nil {
			break
		}
		u := n.c.pick()
		if u == nil || tried[u.Host] {
			continue
		}
		tried[u.Host] = true
		again := req.Clone(req.Context())
		again.URL.Scheme, again.URL.Host = u.Scheme, u.Host
		if resp, err = n.rt.RoundTrip(again); err == nil {
			return resp, nil
		}
	}
	return resp, err
}

// pick returns the next running replica's URL, round robin.
func (c *cluster) pick() *url.URL {
	n := len(c.replicas)
	for range n {
		r := c.replicas[int(c.next.Add(1)%uint64(n))]
		if raw, ok := r.current(); ok {
			u, err := url.Parse(raw)
			if err == nil {
				return u
			}
		}
	}
	return nil
}

// processes lists the running replicas, then the broker.
func (c *cluster) processes() []Process {
	var out []Process
	for _, r := range c.replicas {
		r.mu.Lock()
		if r.alive {
			out = append(out, Process{Name: r.name, PID: r.cmd.Process.Pid, Replica: true, URL: r.url})
		}
		r.mu.Unlock()
	}
	return append(out, Process{Name: "mosquitto", PID: c.broker.PID()})
}

// replicaAt returns the replica whose HTTP listener is url.
func (c *cluster) replicaAt(url string) *replica {
	for _, r := range c.replicas {
		if u, ok := r.current(); ok && u == url {
			return r
		}
	}
	return nil
}

// close stops the load balancer, the replicas and the broker.
func (c *cluster) close() error {
	var errs []error
	if c.lb != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := c.lb.Shutdown(ctx); err != nil {
			errs = append(errs, c.lb.Close())
		}
		cancel()
	}
	for _, r := range c.replicas {
		errs = append(errs, r.stop())
	}
	if c.broker != nil {
		c.broker.Close()
	}
	if c.brokerTo != "" {
		errs = append(errs, os.RemoveAll(c.brokerTo))
	}
	return errors.Join(errs...)
}

// start runs the replica's process and waits for its handshake.
func (r *replica) start(ctx context.Context) error {
	cmd, hs, err := startServeProcess(ctx, r.exe, r.args, r.token, r.opts.Stderr)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.cmd, r.url, r.alive = cmd, hs.HTTP, true
	r.mu.Unlock()
	return nil
}

// current returns the replica's URL while it runs.
func (r *replica) current() (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.url, r.alive
}

func (r *replica) pid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cmd.Process.Pid
}

// kill takes the replica out of the load balancer and kills it with
// SIGKILL (no shutdown code runs); it returns the moment the signal was
// sent, once the process is gone.
func (r *replica) kill() (time.Time, error) {
	r.mu.Lock()
	r.alive = false
	cmd := r.cmd
	r.mu.Unlock()
	at := time.Now()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return at, fmt.Errorf("kill %s: %w", r.name, err)
	}
	_ = cmd.Wait()
	return at, nil
}

// stop ends a running replica in order.
func (r *replica) stop() error {
	r.mu.Lock()
	cmd, alive := r.cmd, r.alive
	r.alive = false
	r.mu.Unlock()
	if !alive || cmd == nil {
		return nil
	}
	if err := stopProcess(cmd); err != nil {
		return fmt.Errorf("%s: %w", r.name, err)
	}
	return nil
}
