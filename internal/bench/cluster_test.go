package bench

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSpread(t *testing.T) {
	s := time.Second
	tests := []struct {
		name string
		in   []time.Duration
		want Spread
	}{
		{"none", nil, Spread{}},
		{"one", []time.Duration{3 * s}, Spread{Count: 1, Min: 3 * s, Median: 3 * s, Max: 3 * s}},
		{"odd, unsorted", []time.Duration{5 * s, 1 * s, 3 * s}, Spread{Count: 3, Min: s, Median: 3 * s, Max: 5 * s}},
		{"even: mean of the middle two", []time.Duration{4 * s, 1 * s, 2 * s, 10 * s}, Spread{Count: 4, Min: s, Median: 3 * s, Max: 10 * s}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := spread(tt.in); got != tt.want {
				t.Errorf("spread(%v) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestServerOptionsCheck(t *testing.T) {
	const pg = "postgres://postgres@127.0.0.1/test"
	cluster := ServerOptions{Broker: BrokerMosquitto, DBURL: pg, Executable: "/bin/otter", Replicas: 2}
	tests := []struct {
		name string
		edit func(*ServerOptions)
		err  string
	}{
		{"embedded", func(o *ServerOptions) { *o = ServerOptions{} }, ""},
		{"embedded, named", func(o *ServerOptions) { *o = ServerOptions{Broker: BrokerEmbedded} }, ""},
		{"cluster", func(*ServerOptions) {}, ""},
		{"unknown broker", func(o *ServerOptions) { o.Broker = "emqx" }, `broker "emqx"`},
		{"SQLite", func(o *ServerOptions) { o.DBURL = "" }, "needs PostgreSQL"},
		{"in process", func(o *ServerOptions) { o.Executable = "" }, "not in this process"},
		{"no replica", func(o *ServerOptions) { o.Replicas = 0 }, "at least one replica"},
		{"profile", func(o *ServerOptions) { o.CPUProfile = "x" }, "profile one server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := cluster
			tt.edit(&o)
			err := o.check()
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Errorf("check() = %v, want %q", err, tt.err)
			}
		})
	}
}

func TestCheckFailover(t *testing.T) {
	ok := FailoverConfig{Server: ServerOptions{Broker: BrokerMosquitto, Replicas: 3}, Devices: 200, Runs: 10, FileSize: 64 << 10, Rate: 600}
	tests := []struct {
		name string
		edit func(*FailoverConfig)
		err  string
	}{
		{"default", func(*FailoverConfig) {}, ""},
		{"kill after", func(c *FailoverConfig) { c.KillAfter = 199 }, ""},
		{"embedded broker", func(c *FailoverConfig) { c.Server.Broker = "" }, "needs cluster mode"},
		{"one replica", func(c *FailoverConfig) { c.Server.Replicas = 1 }, "at least 2 replicas"},
		{"no device", func(c *FailoverConfig) { c.Devices = 0 }, "at least one device"},
		{"no run", func(c *FailoverConfig) { c.Runs = 0 }, "one run"},
		{"empty file", func(c *FailoverConfig) { c.FileSize = 0 }, "at least one byte"},
		{"no rate", func(c *FailoverConfig) { c.Rate = 0 }, "rate limit"},
		{"kill after the last", func(c *FailoverConfig) { c.KillAfter = 200 }, "fewer than the 200 devices"},
		{"negative kill after", func(c *FailoverConfig) { c.KillAfter = -1 }, "kill after -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.edit(&c)
			err := CheckFailover(c)
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Errorf("CheckFailover() = %v, want %q", err, tt.err)
			}
		})
	}
}

// The load balancer sends requests round robin to the replicas that run,
// never to a killed one.
func TestBalancerSkipsStoppedReplicas(t *testing.T) {
	c := &cluster{replicas: []*replica{
		{name: "a", url: "http://127.0.0.1:1", alive: true},
		{name: "b", url: "http://127.0.0.1:2", alive: false},
		{name: "c", url: "http://127.0.0.1:3", alive: true},
	}}
	seen := map[string]int{}
	for range 10 {
		seen[c.pick().Host]++
	}
	if d := cmp.Diff(map[string]int{"127.0.0.1:1": 5, "127.0.0.1:3": 5}, seen); d != "" {
		t.Errorf("requests per replica (-want +got):\n%s", d)
	}
	if r := c.replicaAt("http://127.0.0.1:3"); r == nil || r.name != "c" {
		t.Errorf("replicaAt(c's URL) = %v, want c", r)
	}
	if r := c.replicaAt("http://127.0.0.1:2"); r != nil {
		t.Errorf("replicaAt(a killed replica's URL) = %s, want none", r.name)
	}
	c.replicas[0].alive, c.replicas[2].alive = false, false
	if u := c.pick(); u != nil {
		t.Errorf("pick() with no replica running = %v, want nil", u)
	}
}

func TestProcessUsesPairsSnapshotsByProcess(t *testing.T) {
	before := snapshot{processes: []namedUsage{
		{Process{Name: "replica 1", PID: 10, Replica: true, URL: "http://a"}, Usage{CPU: time.Second}},
		{Process{Name: "mosquitto", PID: 30}, Usage{CPU: 2 * time.Second}},
	}}
	after := snapshot{processes: []namedUsage{
		{Process{Name: "replica 1", PID: 10, Replica: true, URL: "http://a"}, Usage{CPU: 4 * time.Second, PeakRSS: 100}},
		{Process{Name: "replica 2", PID: 20, Replica: true, URL: "http://b"}, Usage{CPU: 500 * time.Millisecond}},
		{Process{Name: "mosquitto", PID: 30}, Usage{CPU: 3 * time.Second, RSS: 7}},
	}}
	want := []ProcessUse{
		{Name: "replica 1", PeakRSS: 100, CPU: 4 * time.Second, TaskCPU: 3 * time.Second},
		// Started during the task: all its CPU is the task's.
		{Name: "replica 2", Scheduling: true, CPU: 500 * time.Millisecond, TaskCPU: 500 * time.Millisecond},
		{Name: "mosquitto", RSS: 7, CPU: 3 * time.Second, TaskCPU: time.Second},
	}
	if d := cmp.Diff(want, processUses(before, after, "http://b")); d != "" {
		t.Errorf("process uses (-want +got):\n%s", d)
	}
}

// A GET whose replica is gone goes to the next running one; a POST is not
// repeated.
func TestBalancerSendsAFailedGetToTheNextReplica(t *testing.T) {
	// The dead replica closes every connection it is given before a word
	// is said, as a killed process's port does to what it had accepted. A
	// closed listener's port would not do: the kernel may hand it to the
	// live replica.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	go func() {
		for {
			conn, err := dead.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "live "+r.Method) }))
	defer live.Close()
	// The dead replica has not been seen to die: the balancer still
	// picks it.
	c := &cluster{replicas: []*replica{{name: "dead", url: "http://" + dead.Addr().String(), alive: true}, {name: "live", url: live.URL, alive: true}}}
	if err := c.startBalancer(); err != nil {
		t.Fatal(err)
	}
	defer c.lb.Close()
	for range 4 {
		resp, err := http.Get(c.lbURL + "/x")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != "live GET" {
			t.Fatalf("GET through the balancer: %d %q, want 200 from the live replica", resp.StatusCode, b)
		}
	}
	bad := 0
	for range 4 {
		resp, err := http.Post(c.lbURL+"/x", "text/plain", strings.NewReader("body"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusBadGateway {
			bad++
		}
	}
	if bad != 2 {
		t.Errorf("%d of 4 POSTs failed, want the 2 sent to the dead replica", bad)
	}
}
