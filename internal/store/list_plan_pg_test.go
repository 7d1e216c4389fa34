package store_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/internal/store/storetest"
)

// TestJobPagePlansPostgres checks PostgreSQL's plans of the pages of a
// task's jobs, on 50,000 jobs with their statistics (PostgreSQL plans by
// cost, so an empty table would say nothing): each page reads its index
// range from the cursor on and stops after the page, and a page of
// several states reads at most a page from each state's index range and
// sorts only those. Reading every state's ids' rows and sorting them
// (up to limit times the number of states rows) was what a page of
// succeeded and failed jobs cost at 1,000,000 jobs; merging the ids first
// and looking their rows up by primary key read 18 times the buffers.
func TestJobPagePlansPostgres(t *testing.T) {
	ctx := context.Background()
	u, s := planStore(t)
	// One job in a thousand failed, one in ten succeeded, the rest queued,
	// as `otter bench lists` seeds them.
	must(t, store.ExecAt(ctx, u, `INSERT INTO jobs (task_id, device_id, device, product, module, state, active, version, created_at, updated_at)
		SELECT 1, i, 'd' || i, 'p', 'default',
			CASE WHEN i % 1000 = 7 THEN 'failed' WHEN i % 10 = 3 THEN 'succeeded' ELSE 'queued' END,
			i % 1000 <> 7 AND i % 10 <> 3, '2.0.0', now(), now()
		FROM generate_series(1, 50000) AS i`))
	// VACUUM sets the visibility map that an index-only scan needs, as
	// autovacuum does.
	must(t, store.ExecAt(ctx, u, "VACUUM ANALYZE jobs"))
	tests := []struct {
		name   string
		states []ota.JobState
		want   []string
	}{
		{"no state", nil, []string{"Limit", "Index Scan using jobs_task on jobs"}},
		{"queued", []ota.JobState{ota.JobQueued}, []string{"Limit", "Index Scan using jobs_task_state on jobs"}},
		{"failed", []ota.JobState{ota.JobFailed}, []string{"Limit", "Index Only Scan using jobs_task_failed on jobs"}},
		{"timed out", []ota.JobState{ota.JobTimedOut}, []string{"Limit", "Index Only Scan using jobs_task_failed on jobs"}},
		{"failed and succeeded", []ota.JobState{ota.JobFailed, ota.JobSucceeded}, []string{"Limit",
			"Index Only Scan using jobs_task_failed on jobs j", "Index Scan using jobs_task_state on jobs j"}},
		{"in flight", []ota.JobState{ota.JobDownloading, ota.JobInstalling, ota.JobQueued}, []string{"Limit",
			"Index Scan using jobs_task_state on jobs j"}},
	}
	for _, tt := range tests {
		for _, after := range []int64{0, 25000} {
			plan, err := store.ExplainJobPage(ctx, s, store.JobFilter{TaskID: 1, States: tt.states}, after, 101)
			must(t, err)
			lines := strings.Split(plan, "\n")
			// The top node is the plan's first want: no sort of the rows
			// above it.
			if !strings.HasPrefix(lines[0], tt.want[0]) {
				t.Errorf("%s after %d: plan starts %q, want %q:\n%s", tt.name, after, lines[0], tt.want[0], plan)
			}
			for _, w := range tt.want[1:] {
				if !strings.Contains(plan, w) {
					t.Errorf("%s after %d: plan lacks %q:\n%s", tt.name, after, w, plan)
				}
			}
			for _, l := range lines {
				if strings.Contains(l, "Seq Scan") || strings.Contains(l, "Bitmap") || strings.Contains(l, "jobs_pkey") {
					t.Errorf("%s after %d: %q in the plan:\n%s", tt.name, after, strings.TrimSpace(l), plan)
				}
			}
			checkSorts(t, fmt.Sprintf("%s after %d", tt.name, after), plan, len(tt.states) > 1)
		}
	}
}

// checkSorts fails the test if plan, of a page of jobs, sorts anything
// but (when topN) at most a page per state at its top: every state's
// rows come in order from their index range, each branch stopping after
// a page (a Limit right above its scan).
func checkSorts(t *testing.T, name, plan string, topN bool) {
	t.Helper()
	lines := strings.Split(plan, "\n")
	for i, l := range lines {
		l = strings.TrimLeft(l, " ->")
		if !strings.HasPrefix(l, "Sort  (") && !strings.HasPrefix(l, "Incremental Sort") {
			continue
		}
		if !topN || i > 1 {
			t.Errorf("%s: a sort in the plan:\n%s", name, plan)
		}
	}
	if !topN {
		return
	}
	for i, l := range lines {
		if strings.Contains(l, "Scan using jobs_task") && (i == 0 || !strings.Contains(lines[i-1], "Limit")) {
			t.Errorf("%s: an index range without its page's limit:\n%s", name, plan)
		}
	}
}

// TestGenericPlansPostgres checks the plans that the pool of generic plans
// (plan_cache_mode = force_generic_plan) keeps for a page of a device's
// events, on 40,000 events with their statistics: the device's other
// events read backwards from events_device, its job events through its
// jobs and events_job, no table scanned, and the parameters left in the
// plan (a generic plan, made once a connection); and for a page of jobs in
// several states, the merge TestJobPagePlansPostgres checks custom.
func TestGenericPlansPostgres(t *testing.T) {
	ctx := context.Background()
	u, s := planStore(t)
	must(t, s.CreateProduct(ctx, &ota.Product{Key: "p", Name: "P"}))
	must(t, store.ExecAt(ctx, u, `INSERT INTO devices (product, key, secret_hash, created_at)
		SELECT 'p', 'd' || i, '\x00', now() FROM generate_series(1, 2000) AS i`))
	must(t, store.ExecAt(ctx, u, `INSERT INTO jobs (task_id, device_id, device, product, module, state, active, version, created_at, updated_at)
		SELECT t, d.id, d.key, 'p', 'default', 'succeeded', false, '2.0.0', now(), now()
		FROM devices d, generate_series(1, 5) AS t`))
	must(t, store.ExecAt(ctx, u, `INSERT INTO job_devices (device_id, job_id, module) SELECT device_id, id, module FROM jobs`))
	// Per job, two events; per device, ten other events.
	must(t, store.ExecAt(ctx, u, `INSERT INTO events (at, actor, kind, action, product, device, task_id, job_id)
		SELECT now(), 'engine', 'job', 'succeeded', 'p', j.device, j.task_id, j.id FROM jobs j, generate_series(1, 2)`))
	must(t, store.ExecAt(ctx, u, `INSERT INTO events (at, actor, kind, action, product, device)
		SELECT now(), 'admin', 'device', 'tags_set', 'p', d.key FROM devices d, generate_series(1, 10)`))
	must(t, store.ExecAt(ctx, u, "VACUUM ANALYZE devices, jobs, job_devices, events"))
	for _, f := range []store.EventFilter{
		{Product: "p", Device: "d7"},
		{Product: "p", Device: "d7", Kind: ota.KindJob},
		{Product: "p", Device: "d7", TaskID: 3},
	} {
		for _, before := range []int64{0, 20000} {
			plan, err := store.ExplainGenericDeviceEvents(ctx, s, f, before, 101)
			must(t, err)
			checkGenericPlan(t, fmt.Sprintf("%+v before %d", f, before), plan, "Limit",
				"using events_device on events", "using events_job on events")
		}
	}
	// Events read through one (column, id) index, newest first.
	for _, f := range []store.EventFilter{{}, {TaskID: 3}, {Kind: ota.KindJob}, {Kind: ota.KindJob, TaskID: 3}, {Actor: "admin"}, {Firmware: 1}} {
		want := "using events_pkey on events"
		switch {
		case f.Firmware != 0:
			want = "using events_firmware on events"
		case f.TaskID != 0:
			want = "using events_task on events"
		case f.Actor != "":
			want = "using events_actor on events"
		case f.Kind != "":
			want = "using events_kind on events"
		}
		for _, before := range []int64{0, 20000} {
			plan, err := store.ExplainGenericDeviceEvents(ctx, s, f, before, 101)
			must(t, err)
			if f == (store.EventFilter{}) {
				// No equality to keep as a parameter: the scan, and the
				// cursor's parameter.
				if !strings.Contains(plan, "Index Scan Backward "+want) || before != 0 && !strings.Contains(plan, "(id < $") {
					t.Errorf("events before %d: plan lacks %q or its cursor:\n%s", before, want, plan)
				}
				continue
			}
			checkGenericPlan(t, fmt.Sprintf("events %+v before %d", f, before), plan, "Limit", "Index Scan Backward "+want)
		}
	}
	// Devices of a product, online or not, and their tags and versions.
	online := true
	must(t, store.ExecAt(ctx, u, `INSERT INTO device_versions (device_id, module, version, reported_at)
		SELECT id, 'default', '1.0.0', now() FROM devices`))
	must(t, store.ExecAt(ctx, u, `INSERT INTO device_tags (device_id, name, value)
		SELECT id, 'site', 's' || (id % 7) FROM devices`))
	must(t, store.ExecAt(ctx, u, `UPDATE devices SET online = id % 2 = 0`))
	must(t, store.ExecAt(ctx, u, "VACUUM ANALYZE devices, device_tags, device_versions"))
	var first int64
	devs, _, err := s.ListDevices(ctx, store.DeviceFilter{Product: "p"}, store.Page{Limit: 1})
	must(t, err)
	first = devs[0].ID
	for _, f := range []store.DeviceFilter{{Product: "p"}, {Product: "p", Online: &online}} {
		want := "using devices_product on devices"
		if f.Online != nil {
			want = "using devices_product_online on devices"
		}
		page, details, err := store.ExplainGenericDevicePage(ctx, s, f, first+1000, 101,
			[]int64{first + 1002, first + 1004, first + 1006})
		must(t, err)
		checkGenericPlan(t, fmt.Sprintf("devices %+v", f), page, "Limit", want)
		// The details read a range of at most twice a page's ids, by
		// index or by a bitmap of the index: either reads only that range.
		for _, w := range []string{" on device_tags_pkey", " on device_versions_pkey", "= $"} {
			if !strings.Contains(details, w) {
				t.Errorf("details of devices %+v: plan lacks %q:\n%s", f, w, details)
			}
		}
		if strings.Contains(details, "Seq Scan") {
			t.Errorf("details of devices %+v: a table scanned:\n%s", f, details)
		}
	}
	// Jobs: a task of 50,000, as TestJobPagePlansPostgres seeds them.
	must(t, store.ExecAt(ctx, u, `INSERT INTO jobs (task_id, device_id, device, product, module, state, active, version, created_at, updated_at)
		SELECT 9, i, 'd' || i, 'p', 'default',
			CASE WHEN i % 1000 = 7 THEN 'failed' WHEN i % 10 = 3 THEN 'succeeded' ELSE 'queued' END,
			i % 1000 <> 7 AND i % 10 <> 3, '2.0.0', now(), now()
		FROM generate_series(1, 50000) AS i`))
	must(t, store.ExecAt(ctx, u, "VACUUM ANALYZE jobs"))
	for _, states := range [][]ota.JobState{{ota.JobFailed, ota.JobSucceeded},
		{ota.JobDownloading, ota.JobInstalling, ota.JobQueued}} {
		for _, after := range []int64{0, 35000} {
			plan, err := store.ExplainGenericJobPage(ctx, s, store.JobFilter{TaskID: 9, States: states}, after, 101)
			must(t, err)
			checkGenericPlan(t, fmt.Sprintf("%v after %d", states, after), plan, "Limit",
				"Index Scan using jobs_task_state on jobs j")
			checkSorts(t, fmt.Sprintf("%v after %d", states, after), plan, true)
		}
	}
	// A task's page in one state or any: one index range in id order,
	// nothing sorted.
	for _, c := range []struct {
		states []ota.JobState
		want   string
	}{
		{nil, "Index Scan using jobs_task on jobs j"},
		{[]ota.JobState{ota.JobQueued}, "Index Scan using jobs_task_state on jobs j"},
		{[]ota.JobState{ota.JobSucceeded}, "Index Scan using jobs_task_state on jobs j"},
		{[]ota.JobState{ota.JobFailed}, "Index Only Scan using jobs_task_failed on jobs j"},
	} {
		for _, after := range []int64{0, 35000} {
			plan, err := store.ExplainGenericOneStatePage(ctx, s, store.JobFilter{TaskID: 9, States: c.states}, after, 101)
			must(t, err)
			checkGenericPlan(t, fmt.Sprintf("%v after %d", c.states, after), plan, "Limit", c.want)
			checkSorts(t, fmt.Sprintf("%v after %d", c.states, after), plan, false)
		}
	}
}

// checkGenericPlan fails the test unless plan, a generic plan of the page
// called name, starts with first, uses every one of wants, keeps its
// parameters and never scans a table or a bitmap of one.
func checkGenericPlan(t *testing.T, name, plan, first string, wants ...string) {
	t.Helper()
	lines := strings.Split(plan, "\n")
	if !strings.HasPrefix(lines[0], first) {
		t.Errorf("%s: plan starts %q, want %s:\n%s", name, lines[0], first, plan)
	}
	for _, w := range append(wants, "= $") {
		if !strings.Contains(plan, w) {
			t.Errorf("%s: plan lacks %q:\n%s", name, w, plan)
		}
	}
	for _, l := range lines {
		if strings.Contains(l, "Seq Scan") || strings.Contains(l, "Bitmap") {
			t.Errorf("%s: %q in the plan:\n%s", name, strings.TrimSpace(l), plan)
		}
	}
}

// planStore opens a store on a PostgreSQL schema of the test's own, or
// skips the test when no PostgreSQL is configured; it returns the schema's
// URL too, for seeding with store.ExecAt.
func planStore(t *testing.T) (string, store.Store) {
	t.Helper()
	base := os.Getenv(storetest.PostgresEnv)
	if base == "" {
		t.Skip(storetest.PostgresEnv + " is not set")
	}
	u := storetest.PostgresURL(t, base)
	return u, storetest.OpenURL(t, u)
}
