package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/otter-ota/otter/client"
)

// FailoverConfig describes a failover benchmark: in cluster mode, runs of
// one rate-limited push task each, the scheduling replica killed with
// SIGKILL in the middle of every run.
type FailoverConfig struct {
	// Server must be cluster mode with at least two replicas.
	Server      ServerOptions
	Devices     int
	Runs        int
	FileSize    int64
	ConnectRate int
	// Rate is the task's rate limit in jobs started per minute: it makes
	// the rollout outlast the takeover.
	Rate int
	// KillAfter is how many jobs have started when the scheduler is
	// killed; 0 means a tenth of the devices.
	KillAfter int
	// Timeout bounds each run, from the task's creation until it ended.
	Timeout  time.Duration
	Progress io.Writer
}

// FailoverRun is what one run measured.
type FailoverRun struct {
	Run       int    `json:"run"`
	Killed    string `json:"killed"`
	Successor string `json:"successor"`
	// StartedBeforeKill counts the jobs started when the kill was sent.
	StartedBeforeKill int64 `json:"started_before_kill"`
	// Takeover runs from the SIGKILL until the successor took the lead
	// (its scheduling_since, as GET /api/v1/server reports it).
	Takeover time.Duration `json:"takeover_ns"`
	// FirstJob runs from the SIGKILL until the earliest started_at of a
	// job started after it: the successor's first job start (the killed
	// replica, dead, starts none).
	FirstJob  time.Duration `json:"first_job_ns"`
	Succeeded int64         `json:"succeeded"`
	Failed    int64         `json:"failed"`
}

// Spread is the minimum, median and maximum of some durations.
type Spread struct {
	Count  int           `json:"count"`
	Min    time.Duration `json:"min_ns"`
	Median time.Duration `json:"median_ns"`
	Max    time.Duration `json:"max_ns"`
}

// spread summarizes durations (in any order).
func spread(ds []time.Duration) Spread {
	if len(ds) == 0 {
		return Spread{}
	}
	s := slices.Sorted(slices.Values(ds))
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Spread{Count: len(s), Min: s[0], Median: med, Max: s[len(s)-1]}
}

// FailoverReport is what a failover benchmark measured.
type FailoverReport struct {
	Devices  int           `json:"devices"`
	Replicas int           `json:"replicas"`
	Rate     int           `json:"rate_per_minute"`
	FileSize int64         `json:"file_size_bytes"`
	Connect  time.Duration `json:"connect_ns"`
	// Provision is the time to create the devices and their broker
	// accounts, before Connect.
	Provision time.Duration `json:"provision_ns"`
	// Accounts, in cluster mode, is how the broker accounts were made:
	// AccountsSeed or AccountsAPI. Seed, part of Provision with
	// AccountsSeed, is the time to write them into Mosquitto's file and
	// restart it and the replicas.
	Accounts string        `json:"accounts,omitempty"`
	Seed     time.Duration `json:"seed_ns,omitempty"`

	Runs     []FailoverRun `json:"runs"`
	Takeover Spread        `json:"takeover"`
	FirstJob Spread        `json:"first_job"`
}

// Err describes runs whose jobs did not all succeed, or is nil.
func (r *FailoverReport) Err() error {
	var errs []error
	for _, run := range r.Runs {
		if run.Succeeded != int64(r.Devices) {
			errs = append(errs, fmt.Errorf("run %d: %d of %d jobs succeeded (%d failed)", run.Run, run.Succeeded, r.Devices, run.Failed))
		}
	}
	return errors.Join(errs...)
}

// CheckFailover refuses a configuration that cannot run.
func CheckFailover(cfg FailoverConfig) error {
	switch {
	case !cfg.Server.clustered():
		return errors.New("bench: failover needs cluster mode (broker mosquitto)")
	case cfg.Server.Replicas < 2:
		return errors.New("bench: failover needs at least 2 replicas: one to kill, one to take over")
	case cfg.Devices <= 0 || cfg.Runs <= 0 || cfg.FileSize <= 0:
		return errors.New("bench: failover needs at least one device, one run and a firmware file of at least one byte")
	case cfg.Rate <= 0:
		return errors.New("bench: failover needs a rate limit, so that the rollout outlasts the takeover")
	case cfg.KillAfter < 0 || cfg.KillAfter >= cfg.Devices:
		return fmt.Errorf("bench: kill after %d started jobs: want fewer than the %d devices", cfg.KillAfter, cfg.Devices)
	}
	return nil
}

// RunFailover starts a cluster and a fleet, and measures Runs takeovers.
func RunFailover(ctx context.Context, cfg FailoverConfig) (*FailoverReport, error) {
	if err := CheckFailover(cfg); err != nil {
		return nil, err
	}
	if cfg.KillAfter == 0 {
		cfg.KillAfter = max(1, cfg.Devices/10)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	r, err := newRig(ctx, cfg.Server, cfg.Devices, "", cfg.Progress)
	if err != nil {
		return nil, err
	}
	defer r.close()
	rep := &FailoverReport{Devices: cfg.Devices, Replicas: cfg.Server.Replicas, Rate: cfg.Rate, FileSize: cfg.FileSize}
	if rep.Connect, err = r.connect(ctx, cfg.Devices, cfg.ConnectRate); err != nil {
		return nil, err
	}
	rep.Provision, rep.Seed, rep.Accounts = r.provisioned, r.seeded, cfg.Server.AccountsPath()
	var takeovers, firsts []time.Duration
	for i := 1; i <= cfg.Runs; i++ {
		run, err := r.failoverRun(ctx, cfg, i)
		if err != nil {
			return rep, fmt.Errorf("run %d: %w", i, err)
		}
		r.say("run %d: killed %s; %s took the lead %s after the kill and started its first job %s after it",
			i, run.Killed, run.Successor, run.Takeover.Round(time.Millisecond), run.FirstJob.Round(time.Millisecond))
		rep.Runs = append(rep.Runs, run)
		takeovers, firsts = append(takeovers, run.Takeover), append(firsts, run.FirstJob)
		rep.Takeover, rep.FirstJob = spread(takeovers), spread(firsts)
	}
	return rep, nil
}

// failoverRun pushes version 2.i.0, kills the scheduler once KillAfter
// jobs have started, measures the takeover, waits for the task to end and
// starts the killed replica again.
func (r *rig) failoverRun(ctx context.Context, cfg FailoverConfig, i int) (FailoverRun, error) {
	run := FailoverRun{Run: i}
	c := r.srv.cluster
	fw, err := r.firmware(ctx, fmt.Sprintf("2.%d.0", i), cfg.FileSize)
	if err != nil {
		return run, err
	}
	task, err := r.api.CreateTask(ctx, client.TaskCreate{Name: fmt.Sprintf("failover %d", i), FirmwareID: fw.ID, Mode: client.ModePush,
		Target: client.Target{All: true}, Policy: client.Policy{Rate: cfg.Rate}})
	if err != nil {
		return run, fmt.Errorf("create the task: %w", err)
	}
	deadline := time.Now().Add(cfg.Timeout)
	// The scheduler to kill, once enough jobs have started.
	var victim *replica
	for victim == nil {
		t, err := r.api.Task(ctx, task.ID)
		if err != nil {
			return run, fmt.Errorf("read the task: %w", err)
		}
		queued := t.Counts[client.JobQueued]
		if started := int64(cfg.Devices) - queued; started >= int64(cfg.KillAfter) {
			if queued == 0 || t.State.Terminal() {
				return run, fmt.Errorf("every job had started before the kill (jobs %v): lower the rate", t.Counts)
			}
			if victim = c.replicaAt(r.scheduling(ctx)); victim != nil {
				run.StartedBeforeKill = started
				break
			}
		}
		if err := r.waitStep(ctx, deadline, "jobs to start before the kill"); err != nil {
			return run, err
		}
	}
	killedURL, _ := victim.current()
	run.Killed = victim.name
	killed, err := victim.kill()
	if err != nil {
		return run, err
	}
	r.say("run %d: killed the scheduler, %s, with SIGKILL after %d jobs started", i, victim.name, run.StartedBeforeKill)
	succ, since, err := r.awaitSuccessor(ctx, killedURL, killed.Add(time.Minute))
	if err != nil {
		return run, err
	}
	run.Successor, run.Takeover = succ, since.Sub(killed)
	first, err := r.firstStartAfter(ctx, task.ID, killed, killed.Add(time.Minute))
	if err != nil {
		return run, err
	}
	run.FirstJob = first.Sub(killed)
	done, err := r.waitTask(ctx, task.ID, time.Until(deadline))
	if err != nil {
		return run, err
	}
	run.Succeeded, run.Failed = done.Counts[client.JobSucceeded], done.Counts[client.JobFailed]
	r.say("run %d: task ended %s (%d succeeded, %d failed); starting %s again", i, done.State, run.Succeeded, run.Failed, victim.name)
	if err := victim.start(ctx); err != nil {
		return run, fmt.Errorf("start %s again: %w", victim.name, err)
	}
	return run, nil
}

// awaitSuccessor waits until a replica other than the one at killedURL
// schedules, and returns its name and when it took the lead.
func (r *rig) awaitSuccessor(ctx context.Context, killedURL string, deadline time.Time) (string, time.Time, error) {
	for {
		if info, err := r.api.ServerInfo(ctx); err == nil {
			for _, rep := range info.Replicas {
				if rep.Scheduling && !rep.Gone && rep.URL != killedURL && rep.SchedulingSince != nil {
					name := rep.URL
					if s := r.srv.cluster.replicaAt(rep.URL); s != nil {
						name = s.name
					}
					return name, *rep.SchedulingSince, nil
				}
			}
		}
		if err := r.waitStep(ctx, deadline, "another replica to take the lead"); err != nil {
			return "", time.Time{}, err
		}
	}
}

// firstStartAfter waits until a job of the task has started after t and
// returns the earliest such start. started_at is the time the engine
// gave the batch that started the job, on this machine's clock.
func (r *rig) firstStartAfter(ctx context.Context, taskID int64, t, deadline time.Time) (time.Time, error) {
	for {
		var first time.Time
		var lastErr error
		for j, err := range r.api.AllTaskJobs(ctx, taskID, nil, client.ListOptions{Limit: 500}) {
			if err != nil {
				lastErr = err
				break
			}
			if j.StartedAt != nil && j.StartedAt.After(t) && (first.IsZero() || j.StartedAt.Before(first)) {
				first = *j.StartedAt
			}
		}
		if lastErr == nil && !first.IsZero() {
			return first, nil
		}
		// Reading every job is the slow part of this loop: poll less
		// often than elsewhere (the figure is started_at, not when it
		// was seen).
		if err := r.waitStep(ctx, deadline, "the first job started after the kill"); err != nil {
			return time.Time{}, errors.Join(err, lastErr)
		}
		if err := pause(ctx, 80*time.Millisecond); err != nil {
			return time.Time{}, err
		}
	}
}

// waitStep pauses before the next poll, failing past deadline or when a
// device process stopped.
func (r *rig) waitStep(ctx context.Context, deadline time.Time, what string) error {
	if time.Now().After(deadline) {
		return fmt.Errorf("timed out waiting for %s", what)
	}
	if err := r.devs.err(); err != nil {
		return err
	}
	return pause(ctx, 20*time.Millisecond)
}
