package server_test

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/brokeradmin/dynsec/mosquittotest"
	"github.com/otter-ota/otter/internal/store/pgtest"
	"github.com/otter-ota/otter/internal/store/storetest"
)

// Two replicas on a PostgreSQL of the test's own (the machine's shared one
// is never restarted), Mosquitto with dynamic security, and 100 SDK
// devices. PostgreSQL is stopped (fast shutdown: every session ends) in
// the middle of a push rollout, until both replicas say they are not
// ready, and started again. Each replica must recover by itself: both
// serve again, exactly one schedules, and every job of the rollout started
// before the restart ends succeeded exactly once.
func TestClusterRecoversFromAPostgreSQLRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the otter binary and runs PostgreSQL, Mosquitto, two replicas and 100 devices")
	}
	// Gated like the other cluster tests: CI runs it in its PostgreSQL pass,
	// where a PostgreSQL that cannot be started fails it (pgtest, CI=true).
	if os.Getenv(storetest.PostgresEnv) == "" {
		t.Skip("a cluster test: set " + storetest.PostgresEnv + " (this test starts its own PostgreSQL besides)")
	}
	const devices = 100
	pg := pgtest.Start(t)
	db := storetest.PostgresURL(t, pg.URL)
	br := mosquittotest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	schedID := randomID("otter-sched-")
	procs := startReplicas(t, db, 2, "--broker", brokerURL(br), "--broker-admin", "dynsec", "--broker-client-id", schedID)
	a, b := procs[0], procs[1]
	apiA, apiB := client.New(a.httpURL, crashToken), client.New(b.httpURL, crashToken)
	waitWithin(t, 30*time.Second, "replica A to schedule, as B sees it", func() bool { return scheduler(apiB) == a.httpURL })

	r := &crashRig{t: t, proc: b, api: apiB, mqtt: "tcp://" + br.Addr, ob: newObserver()}
	fleet := r.fleet(ctx, "sim-", devices, 400*time.Millisecond)
	fw := r.firmware(ctx)
	task, err := apiB.CreateTask(ctx, client.TaskCreate{FirmwareID: fw.ID, Mode: client.ModePush,
		Target: client.Target{All: true}, Policy: client.Policy{Rate: 1200, MaxConcurrent: 10}})
	if err != nil {
		t.Fatal(err)
	}
	at := r.until(func(t *client.Task) bool {
		return t.Counts[client.JobSucceeded] >= 15 && inFlight(t) > 0 && t.Counts[client.JobQueued] >= 40
	}, task.ID, "some jobs succeeded, some in flight and most queued")
	// Stopped (fast shutdown) until both replicas say they are not ready,
	// then started again.
	stopped := time.Now()
	pg.Stop()
	for _, p := range procs {
		waitWithin(t, 30*time.Second, p.httpURL+" to say it is not ready while PostgreSQL is down", func() bool { return !ready(p.httpURL) })
	}
	pg.Resume(t)
	restarted := time.Now()
	t.Logf("PostgreSQL stopped (fast shutdown) for %v: counts before %v", restarted.Sub(stopped).Round(10*time.Millisecond), at.Counts)

	for _, p := range procs {
		waitWithin(t, 30*time.Second, p.httpURL+" to be ready again", func() bool { return ready(p.httpURL) })
	}
	// The restart ended the leader's lock session: whoever schedules now
	// took the lead after it.
	var leader string
	var since time.Time
	waitWithin(t, 30*time.Second, "both replicas to agree that one of them took the lead after the restart", func() bool {
		leader, since = schedulerSince(apiA)
		return since.After(restarted) && leader == scheduler(apiB) && oneScheduler(apiA) && oneScheduler(apiB)
	})
	t.Logf("%s schedules again %v after the restart", leader, since.Sub(restarted).Round(10*time.Millisecond))
	waitWithin(t, 30*time.Second, "exactly one replica to say in /metrics that it schedules and is the broker's client", func() bool {
		return leaderMetric(a.httpURL)+leaderMetric(b.httpURL) == 1 &&
			metricValue(leader, "otter_broker_connected") == 1 && metricValue(a.httpURL, "otter_broker_connected")+metricValue(b.httpURL, "otter_broker_connected") == 1
	})

	done := r.until(func(t *client.Task) bool { return t.State.Terminal() }, task.ID, "the task to end")
	r.checkExactlyOnce(ctx, done, fleet, devices)
	if !oneScheduler(apiA) || leaderMetric(a.httpURL)+leaderMetric(b.httpURL) != 1 {
		t.Error("at the end of the rollout, not exactly one replica schedules")
	}
	// A replica starting a new term beside its own client of the last one
	// (same client id) makes the broker hand the session back and forth.
	if n := strings.Count(br.Log(), "Client "+schedID+" already connected"); n > 0 {
		t.Errorf("the broker saw the scheduler's client id connect %d times while it was connected", n)
	}
}

// schedulerSince returns the URL of the replica that schedules, as api's
// replica sees it, and since when; zero values when none does.
func schedulerSince(api *client.Client) (string, time.Time) {
	info, err := api.ServerInfo(context.Background())
	if err != nil {
		return "", time.Time{}
	}
	for _, r := range info.Replicas {
		if r.Scheduling && !r.Gone && r.SchedulingSince != nil {
			return r.URL, *r.SchedulingSince
		}
	}
	return "", time.Time{}
}

// ready reports whether the replica at base answers /readyz with 200.
func ready(base string) bool {
	hc := &http.Client{Timeout: 3 * time.Second}
	resp, err := hc.Get(base + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// oneScheduler reports whether api's replica lists exactly one replica
// that schedules.
func oneScheduler(api *client.Client) bool {
	info, err := api.ServerInfo(context.Background())
	if err != nil {
		return false
	}
	n := 0
	for _, r := range info.Replicas {
		if r.Scheduling && !r.Gone {
			n++
		}
	}
	return n == 1
}

// leaderMetric reads otter_scheduler_leader from the replica's /metrics;
// -1 when it cannot.
func leaderMetric(base string) int { return metricValue(base, "otter_scheduler_leader") }

// counterValue reads the series name, without labels, from the replica's
// /metrics; -1 when it cannot.
func counterValue(base, name string) float64 {
	hc := &http.Client{Timeout: 3 * time.Second}
	resp, err := hc.Get(base + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return -1
			}
			return f
		}
	}
	return -1
}

// metricValue reads the series name, without labels, of value 0 or 1 from
// the replica's /metrics; -1 when it cannot.
func metricValue(base, name string) int {
	hc := &http.Client{Timeout: 3 * time.Second}
	req, _ := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	resp, err := hc.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		switch strings.TrimSpace(sc.Text()) {
		case name + " 1":
			return 1
		case name + " 0":
			return 0
		}
	}
	return -1
}
