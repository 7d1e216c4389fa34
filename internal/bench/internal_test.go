package bench

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/internal/store/storetest"
)

func TestParseMetrics(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Metrics
		err  string
	}{
		{"empty", "", Metrics{}, ""},
		{"comments and blank lines", "# HELP x y\n# TYPE x counter\n\nx 3\n", Metrics{"x": 3}, ""},
		{"labels are summed", "up{kind=\"inform\"} 2\nup{kind=\"progress\"} 5\n",
			Metrics{"up": 7, `up{kind="inform"}`: 2, `up{kind="progress"}`: 5}, ""},
		{"quoted brace and escaped quote", "m{a=\"}\\\"{\",b=\"x\"} 1.5\n", Metrics{"m": 1.5, `m{a="}\"{",b="x"}`: 1.5}, ""},
		{"timestamp", "m 4 1700000000000\n", Metrics{"m": 4}, ""},
		{"exponent and special values", "a 1e+06\nb +Inf\n", Metrics{"a": 1e6, "b": posInf()}, ""},
		{"histogram series", "h_bucket{le=\"0.1\"} 3\nh_sum 0.25\nh_count 3\n", Metrics{"h_bucket": 3, `h_bucket{le="0.1"}`: 3, "h_sum": 0.25, "h_count": 3}, ""},
		{"no value", "m\n", nil, "want a metric name and a value"},
		{"bad value", "m abc\n", nil, "value"},
		{"labels not closed", "m{a=\"b\" 1\n", nil, "labels not closed"},
		{"too many fields", "m 1 2 3\n", nil, "optional timestamp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMetrics(strings.NewReader(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("metrics (-want +got):\n%s", d)
			}
		})
	}
}

func posInf() float64 {
	var zero float64
	return 1 / zero
}

// FuzzParseMetrics checks that no input makes the parser panic, and that
// what it accepts has a name for every value.
func FuzzParseMetrics(f *testing.F) {
	f.Add("# TYPE x counter\nx{a=\"b\"} 1\n")
	f.Add("m{a=\"}\\\"\"} 2 3\n")
	f.Add("h_sum 0.5\nh_count 2\n")
	f.Fuzz(func(t *testing.T, in string) {
		m, err := ParseMetrics(strings.NewReader(in))
		if err != nil {
			return
		}
		for name := range m {
			base, _, _ := strings.Cut(name, "{")
			if base == "" || strings.ContainsAny(base, " \t") {
				t.Fatalf("accepted metric name %q from %q", name, in)
			}
		}
	})
}

func TestStatusAndStat(t *testing.T) {
	status := []byte("Name:\totter\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n")
	if n, err := statusBytes(status, "VmHWM:"); err != nil || n != 200<<20 {
		t.Errorf("VmHWM = %d, %v; want 200 MiB", n, err)
	}
	if _, err := statusBytes(status, "VmSwap:"); err == nil {
		t.Error("a missing line gave no error")
	}
	if _, err := statusBytes([]byte("VmRSS: 12 MB\n"), "VmRSS:"); err == nil {
		t.Error("a size not in kB gave no error")
	}
	// The command name may hold spaces and parentheses.
	stat := []byte("42 (my (odd) cmd) S 1 42 42 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 8 0 100 0 0")
	if d, err := statCPU(stat); err != nil || d != 4*time.Second {
		t.Errorf("CPU = %s, %v; want 4s (400 ticks)", d, err)
	}
	if _, err := statCPU([]byte("42 (x) S 1")); err == nil {
		t.Error("a short stat line gave no error")
	}
}

func TestBrokerAddresses(t *testing.T) {
	tests := []struct {
		name    string
		broker  string
		n, per  int
		want    []string
		wantErr string
	}{
		{"fits one address", "tcp://127.0.0.1:1883", 10, 10, []string{"tcp://127.0.0.1:1883"}, ""},
		{"no limit", "tcp://127.0.0.1:1883", 10, 0, []string{"tcp://127.0.0.1:1883"}, ""},
		{"spread", "tcp://127.0.0.1:1883", 25, 10, []string{"tcp://127.0.0.1:1883", "tcp://127.0.0.2:1883", "tcp://127.0.0.3:1883"}, ""},
		{"not loopback", "tcp://10.0.0.1:1883", 25, 10, nil, "127.0.0.1"},
		{"too many addresses", "tcp://127.0.0.250:1883", 100, 10, nil, "loopback addresses"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := brokerAddresses(tt.broker, tt.n, tt.per)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("addresses (-want +got):\n%s", d)
			}
		})
	}
}

func TestLatencyAndRates(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	got := latency(ds)
	want := Latency{Count: 100, P50: 51 * time.Millisecond, P99: 100 * time.Millisecond, Max: 100 * time.Millisecond}
	if got != want {
		t.Errorf("latency = %+v, want %+v", got, want)
	}
	if (latency(nil) != Latency{}) {
		t.Error("no durations should give a zero Latency")
	}
	t0 := time.Now()
	points := []progressPoint{{t0, 0}, {t0.Add(time.Second), 100}, {t0.Add(2 * time.Second), 300}, {t0.Add(3 * time.Second), 400}}
	if r := rateBetween(points, 100, 300); r != 200 {
		t.Errorf("rate between 100 and 300 = %v, want 200/s", r)
	}
	if r := rateBetween(points, 0, 1000); r != 0 {
		t.Errorf("rate to a level never reached = %v, want 0", r)
	}
}

func TestCheckFileLimit(t *testing.T) {
	limit, err := RaiseFileLimit()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := checkFileLimit(10, true); err != nil {
		t.Errorf("10 devices: %v", err)
	}
	_, err = checkFileLimit(int(limit), true)
	if err == nil || !strings.Contains(err.Error(), "ulimit -n -H") {
		t.Errorf("%d devices: error %v, want one that names the hard limit", limit, err)
	}
}

// TestListCursorsAreTheAPIs checks that the cursors the list benchmark
// builds are those the API hands out as next: the next of a first page of
// 100 is the cursor after its 100th row.
func TestListCursorsAreTheAPIs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	jc := &JobsConfig{DBURL: os.Getenv(storetest.PostgresEnv), DataDir: t.TempDir()}
	st, closeStore, err := openJobsStore(ctx, jc)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := closeStore(); err != nil {
			t.Error(err)
		}
	}()
	cfg := ListsConfig{Rows: 300}
	seed, err := seedLists(ctx, st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := startListsServer(ctx, st, seed, cfg, jc)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
	}()
	c := client.New(srv.HTTPURL, srv.Token)
	first := client.ListOptions{Limit: listPageSize}
	jobs, err := c.TaskJobs(ctx, seed.task.ID, nil, first)
	if err != nil {
		t.Fatal(err)
	}
	devices, err := c.ListDevices(ctx, client.DeviceFilter{Product: benchProduct}, first)
	if err != nil {
		t.Fatal(err)
	}
	events, err := c.ListEvents(ctx, client.EventFilter{}, first)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs.Items) != listPageSize || len(devices.Items) != listPageSize || len(events.Items) != listPageSize {
		t.Fatalf("pages of %d jobs, %d devices, %d events: want %d each", len(jobs.Items), len(devices.Items), len(events.Items), listPageSize)
	}
	// Devices show no id: theirs run on from the first, as the seed made
	// them.
	for _, tc := range []struct {
		list, next string
		after      int64
	}{
		{"jobs", jobs.Next, jobs.Items[listPageSize-1].ID},
		{"devices", devices.Next, seed.firstDevice + listPageSize - 1},
		{"events", events.Next, events.Items[listPageSize-1].ID},
	} {
		if want := store.IDCursor(tc.after); tc.next != want {
			t.Errorf("%s: the API's next is %q, the benchmark's cursor after id %d is %q", tc.list, tc.next, tc.after, want)
		}
	}
	if id := jobs.Items[listPageSize-1].ID; id != seed.firstJob+listPageSize-1 {
		t.Errorf("the 100th job is %d: the task's job ids do not run on from %d", id, seed.firstJob)
	}
}
