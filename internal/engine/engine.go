// Package engine is otter's rollout engine. It turns running tasks into job
// transitions under their policies (rate, concurrency, phases, windows,
// retries, timeouts, abort rules) and applies every device message that
// moves a job (inform, request, confirm, progress, connect).
//
// The engine is the only writer of jobs. Everything that changes a job goes
// through one loop goroutine, which gathers device messages into batches and
// writes each batch in one transaction before anyone is answered: a device's
// QoS 1 PUBACK or HTTP response follows the commit, so an acknowledged
// message is never lost, and thousands of messages cost a handful of
// commits. All state lives in the store; the loop rebuilds its caches at
// start, so the process can be killed at any point and restarted.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/sdk/wire"
)

// Store is what the engine needs from persistence.
type Store interface {
	GetFirmware(ctx context.Context, id int64) (ota.Firmware, error)
	MarkFirmwareVerified(ctx context.Context, firmwareID, taskID int64, at time.Time) error

	CreateTask(ctx context.Context, t *ota.Task, jobs []ota.Job) error
	GetTask(ctx context.Context, id int64) (ota.Task, error)
	// ActiveTasks lists the tasks that are not terminal, with their counts
	// and the engine's bookkeeping.
	ActiveTasks(ctx context.Context) ([]ota.ActiveTask, error)
	TaskPhaseCounts(ctx context.Context, taskID int64) (ota.PhaseCounts, error)
	TargetCandidates(ctx context.Context, q ota.TargetQuery) ([]ota.Candidate, error)

	// Credentials finds a device by product and key (ENOTFOUND if none).
	Credentials(ctx context.Context, product, key string) (ota.DeviceCredentials, error)
	// ExistingDevices returns which of the given devices exist.
	ExistingDevices(ctx context.Context, deviceIDs []int64) (map[int64]bool, error)
	// OrphanJobs returns up to limit active jobs of deleted devices.
	OrphanJobs(ctx context.Context, limit int) ([]ota.Job, error)
	// DeviceTags returns the tags of the given devices.
	DeviceTags(ctx context.Context, deviceIDs []int64) (map[int64]map[string]string, error)
	// ActiveJobs returns the non-terminal jobs of the given devices.
	ActiveJobs(ctx context.Context, deviceIDs []int64) ([]ota.Job, error)
	// LastJobs returns the newest job of each device and module of the
	// given devices.
	LastJobs(ctx context.Context, deviceIDs []int64) ([]ota.Job, error)
	JobsByID(ctx context.Context, ids []int64) ([]ota.Job, error)
	// QueuedJobs returns the next jobs a task may start, in rollout order,
	// and the place of the last of them (for the next read's After).
	QueuedJobs(ctx context.Context, q ota.QueuedQuery) ([]ota.Job, ota.RolloutPos, error)
	// NextRetry returns the earliest retry time after now of a task's
	// queued jobs, if any job waits for one.
	NextRetry(ctx context.Context, taskID int64, now time.Time) (time.Time, bool, error)
	// ExpiredJobs returns in-flight jobs whose deadline has passed.
	ExpiredJobs(ctx context.Context, now time.Time, limit int) ([]ota.Job, error)
	// UnansweredJobs returns notified jobs of a task, sent before the given
	// time to devices that are online now: their command is sent again.
	UnansweredJobs(ctx context.Context, taskID int64, sentBefore time.Time, limit int) ([]ota.Job, error)
	// JobsInStates returns up to limit jobs of a task in the given states,
	// after the given job id (paging through a task in the engine).
	JobsInStates(ctx context.Context, taskID int64, states []ota.JobState, afterID int64, limit int) ([]ota.Job, error)

	// CancelQueued cancels a task's jobs that have not started (and may
	// end the task) in one transaction; it returns the number cancelled
	// per phase and former state.
	CancelQueued(ctx context.Context, r ota.CancelRequest) (ota.PhaseCounts, error)
	// JobsWithVersions pages through a task's jobs in some states with the
	// versions their devices run.
	JobsWithVersions(ctx context.Context, q ota.JobVersionQuery) ([]ota.JobVersion, error)
	// LatestEndedJobs returns the devices' latest job per module when it
	// failed or timed out.
	LatestEndedJobs(ctx context.Context, deviceIDs []int64) ([]ota.Job, error)
	// TaskMembers says which devices have a job (not cancelled) in which
	// tasks.
	TaskMembers(ctx context.Context, taskIDs, deviceIDs []int64) (map[ota.TaskDevice]bool, error)
	// DevicesByID returns devices with their tags and versions.
	DevicesByID(ctx context.Context, ids []int64) ([]ota.Device, error)
	// Apply writes a Change in one transaction. Job changes whose Old.Rev no
	// longer matches are not written; their ids are returned.
	Apply(ctx context.Context, c ota.ChangeSet) (conflicts []int64, err error)
}

// Downlink delivers messages to connected devices. Send must not block on
// the network: a device that is not connected simply misses the message
// and gets it again when it connects.
type Downlink interface {
	Send(product, device string, kind string, payload []byte)
}

// URLSigner makes the short-lived download URL of a firmware for a device.
type URLSigner interface {
	DownloadURL(product, device string, firmwareID int64) string
}

// CommandSigner signs the upgrade command sent to one device, so that the
// device can trust every field that changes what it does.
type CommandSigner interface {
	SignCommand(c wire.Command) string
}

// Config wires an Engine.
type Config struct {
	Store    Store
	Downlink Downlink
	URLs     URLSigner
	// Commands signs upgrade commands; nil sends them unsigned, which the
	// device SDK refuses (tests of the engine alone may leave it nil).
	Commands CommandSigner
	Logger   *slog.Logger
	Metrics  prometheus.Registerer
	// Now is the clock (tests may move it); nil means time.Now.
	Now func() time.Time
	// Tick is how often timers (timeouts, retries, windows) are checked
	// when nothing else wakes the engine; 0 means one second.
	Tick time.Duration
	// ResendAfter is how long a push command may go unanswered before it is
	// sent again to a connected device; 0 means one minute.
	ResendAfter time.Duration
	// BatchSize bounds the device messages written in one transaction.
	BatchSize int
	// SeenEvery is how stale a device's stored last_seen may be: a message
	// within SeenEvery of the last_seen the engine last wrote is not
	// written at once but kept in memory, and written when the next message
	// comes SeenEvery or more after that write, when the device
	// disconnects, or at the first tick after SeenEvery has passed. 0 means
	// DefaultSeenEvery; a negative value writes every message's time.
	SeenEvery time.Duration
	// Reads, when set, tells the operator's reads in flight: while any
	// is (or one ended within priority.Recent), a sweep starts jobs in
	// batches of at most ReadBatch and waits for the reads in flight
	// before each batch, up to ReadWait, so that a read does not wait
	// behind a whole batch for the CPU (see startLimit).
	Reads Reads
	// ReadBatch is the batch of job starts while reads are in flight; 0
	// means DefaultReadBatch.
	ReadBatch int
	// ReadWait bounds how long a batch of job starts waits for the reads
	// in flight; 0 means DefaultReadWait.
	ReadWait time.Duration
}

// Reads are the operator's reads in flight (priority.Reads).
type Reads interface {
	// Wait waits until no read is in flight, at most max, and reports
	// whether reads are coming (one was in flight or ended just before).
	Wait(ctx context.Context, max time.Duration) bool
}

// DefaultSeenEvery is how stale a stored last_seen may be by default. A
// device sends a burst of messages while it upgrades (eight in 64 KiB's
// time at the SDK's defaults); writing each one's time was a device row
// rewritten per message, about a sixth of the engine's commit.
const DefaultSeenEvery = 10 * time.Second

// DefaultReadBatch and DefaultReadWait are the engine's yield to the
// operator's reads: while reads are in flight, job starts go in batches of
// 100 (a few milliseconds of CPU each, against about 70 for a full batch of
// 1,000) and each batch first waits up to 10 ms for the reads to finish.
// Measured with `otter bench lists --rows 1000000 --while-starting`
// (BENCHMARKS.md, "Lists while the engine starts jobs: reads first").
const (
	DefaultReadBatch = 100
	DefaultReadWait  = 10 * time.Millisecond
)

// Engine is the rollout engine. Create it with New and run it with Run.
type Engine struct {
	cfg     Config
	st      Store
	down    Downlink
	urls    URLSigner
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	// readsBeside says the store reads beside its write transaction (see
	// ReadsBesideWrites), so the next batch of queued jobs is read while
	// the one before it commits.
	readsBeside bool

	ops  chan op
	wake chan struct{}
	// ready closes when Run's loop takes ops, stopped when it has ended:
	// callers are refused instead of waiting for a loop that is not there.
	ready, stopped chan struct{}
	stopOnce       sync.Once

	// Owned by the loop goroutine.
	tasks    map[int64]*taskState
	firmware map[int64]ota.Firmware
	// seen holds, for devices heard within about SeenEvery, the last_seen
	// written for them and the latest message's time (see Config.SeenEvery).
	seen map[int64]seenMark
	// devJobs holds the active jobs of devices in seen (jobcache.go).
	devJobs map[int64][]ota.Job
	// devJobsKeep is when the entries a task's creation held may be
	// pruned, at the latest devJobsKeepMax (holdJobs, keepJobs).
	devJobsKeep, devJobsKeepMax time.Time

	// waits holds what each held task waits for, written by the loop at
	// every plan and read by Waiting from any goroutine.
	waitMu sync.Mutex
	waits  map[int64]*ota.Waiting
}

// New returns an engine; nothing runs until Run.
func New(cfg Config) (*Engine, error) {
	if cfg.Store == nil || cfg.Downlink == nil || cfg.URLs == nil {
		return nil, errors.New("engine: Store, Downlink and URLs are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.ResendAfter <= 0 {
		cfg.ResendAfter = time.Minute
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	if cfg.SeenEvery == 0 {
		cfg.SeenEvery = DefaultSeenEvery
	}
	if cfg.ReadBatch <= 0 {
		cfg.ReadBatch = DefaultReadBatch
	}
	if cfg.ReadWait <= 0 {
		cfg.ReadWait = DefaultReadWait
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	rb, _ := cfg.Store.(interface{ ReadsBesideWrites() bool })
	return &Engine{
		readsBeside: rb != nil && rb.ReadsBesideWrites(),
		cfg:         cfg,
		st:          cfg.Store,
		down:        cfg.Downlink,
		urls:        cfg.URLs,
		log:         cfg.Logger,
		now:         cfg.Now,
		metrics:     m,
		ops:         make(chan op, 4*cfg.BatchSize),
		wake:        make(chan struct{}, 1),
		ready:       make(chan struct{}),
		stopped:     make(chan struct{}),
		tasks:       make(map[int64]*taskState),
		firmware:    make(map[int64]ota.Firmware),
		seen:        make(map[int64]seenMark),
		devJobs:     make(map[int64][]ota.Job),
	}, nil
}

// Run loads the active tasks and runs the loop until ctx ends.
func (e *Engine) Run(ctx context.Context) error {
	defer e.stopOnce.Do(func() { close(e.stopped) })
	if err := e.loadTasks(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return fmt.Errorf("engine: load tasks: %w", err)
	}
	if err := e.cancelOrphans(ctx); err != nil && ctx.Err() == nil {
		// Not fatal: the jobs wait, as they did, until the next start.
		e.log.Error("jobs of deleted devices not cancelled", "err", err)
	}
	ticker := time.NewTicker(e.cfg.Tick)
	defer ticker.Stop()
	close(e.ready)
	e.schedule(ctx)
	for {
		select {
		case <-ctx.Done():
			e.drain(ctx.Err())
			return nil
		case o := <-e.ops:
			e.runOps(ctx, e.gather(o))
		case <-e.wake:
			e.schedule(ctx)
		case <-ticker.C:
			e.flushSeen(ctx)
			e.schedule(ctx)
		}
	}
}

// gather takes the first op and whatever else is already waiting, up to a
// batch, so that one transaction serves a burst of messages.
func (e *Engine) gather(first op) []op {
	batch := []op{first}
	for len(batch) < e.cfg.BatchSize {
		select {
		case o := <-e.ops:
			batch = append(batch, o)
		default:
			return batch
		}
	}
	return batch
}

// drain answers every op still queued when the engine stops, so that no
// caller waits forever.
func (e *Engine) drain(err error) {
	for {
		select {
		case o := <-e.ops:
			o.fail(fmt.Errorf("engine stopped: %w", err))
		default:
			return
		}
	}
}

// poke asks the loop to run the scheduler soon without blocking.
func (e *Engine) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// startWait bounds how long a caller waits for an engine that has not
// started its loop yet (it is loading its tasks).
const startWait = 5 * time.Second

func (e *Engine) waitReady(ctx context.Context) error {
	unavailable := ota.Errorf(ota.EUNAVAILABLE, "the rollout engine is not running: try again in a moment")
	select {
	case <-e.stopped:
		return unavailable
	case <-e.ready:
		return nil
	default:
	}
	t := time.NewTimer(startWait)
	defer t.Stop()
	select {
	case <-e.ready:
		return nil
	case <-e.stopped:
		return unavailable
	case <-t.C:
		return unavailable
	case <-ctx.Done():
		return ctx.Err()
	}
}

// submit hands an op to the loop and waits for its answer.
func (e *Engine) submit(ctx context.Context, o op) error {
	if err := e.waitReady(ctx); err != nil {
		return err
	}
	select {
	case e.ops <- o:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-o.done():
		return err
	case <-e.stopped:
		return ota.Errorf(ota.EUNAVAILABLE, "the rollout engine stopped: try again in a moment")
	case <-ctx.Done():
		return ctx.Err()
	}
}
