package api

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

// Engine is the part of the rollout engine the API drives. The engine is
// the only writer of tasks and jobs, so every change goes through it; reads
// go straight to the store.
type Engine interface {
	CreateTask(ctx context.Context, spec ota.TaskSpec) (ota.Task, error)
	// Plan is a dry run of CreateTask: what the task would target.
	Plan(ctx context.Context, spec ota.TaskSpec) (engine.Preview, error)
	Pause(ctx context.Context, id int64) (ota.Task, error)
	Resume(ctx context.Context, id int64) (ota.Task, error)
	Cancel(ctx context.Context, id int64) (ota.Task, error)
	Advance(ctx context.Context, id int64) (ota.Task, error)
	// RetryFailed requeues failed and timed-out jobs and says how many.
	RetryFailed(ctx context.Context, id int64) (ota.Task, int, error)
	// UpdatePolicy changes a task's policy by a JSON merge patch.
	UpdatePolicy(ctx context.Context, id int64, patch map[string]json.RawMessage) (ota.Task, error)
	// RetryFailedDevices requeues the failed and timed-out jobs of the
	// given devices only.
	RetryFailedDevices(ctx context.Context, id int64, devices []string) (ota.Task, int, error)
	// CancelDevices cancels the jobs of the given devices that have not
	// started installing, and says how many.
	CancelDevices(ctx context.Context, id int64, devices []string) (ota.Task, int, error)
	// DevicesChanged tells the engine that devices were created or their
	// tags changed: running dynamic tasks take those that now match.
	DevicesChanged(ctx context.Context, deviceIDs []int64) error
	// DeleteDevice deletes a device and cancels its active jobs.
	DeleteDevice(ctx context.Context, product, key string) error
	// Waiting says what a task held by its policy waits for (nil: not held).
	Waiting(id int64) *ota.Waiting
}

// maxTaskBody bounds a task creation body: an explicit list of about half a
// million device keys. Larger fleets are targeted by tags or --all.
const maxTaskBody = 32 << 20

// maxPreviewBusy bounds the busy devices a dry run lists; busy_total counts
// them all.
const maxPreviewBusy = 1000

// TaskCreate is the body of a task creation or of its dry run.
type TaskCreate struct {
	Name       string   `json:"name,omitempty" doc:"A name for people; free text." example:"spring rollout"`
	FirmwareID int64    `json:"firmware_id" minimum:"1" doc:"The firmware the devices are upgraded to."`
	Mode       ota.Mode `json:"mode,omitempty" enum:"push,request" doc:"push (default): the server sends the upgrade; request: devices ask and the server offers it."`
	// Verification marks a task that proves a verify-required firmware.
	Verification bool       `json:"verification,omitempty" doc:"A verification task: an explicit device list that proves a verify-required firmware before batch tasks may use it."`
	DryRun       bool       `json:"dry_run,omitempty" doc:"Create nothing: answer 200 with the devices the task would target (paged by the limit and after query parameters)."`
	Target       ota.Target `json:"target" doc:"Which devices: all, devices, tags, from_versions narrow one another; percent keeps a stable sample; dynamic also takes devices that come to match; skip_busy leaves out devices another task is upgrading instead of refusing."`
	Policy       ota.Policy `json:"policy,omitempty" doc:"How the task runs; every field is optional. Durations are Go durations (\"30s\", \"10m\"), times RFC 3339, percentages numbers (5 for 5%)."`
}

// TaskPreview is one page of a dry run: what a task would target.
type TaskPreview struct {
	Total    int      `json:"total" doc:"The number of devices the task would target."`
	Devices  []string `json:"devices" nullable:"false" doc:"One page of those devices, in rollout order."`
	Next     string   `json:"next" doc:"Pass as after (with the same body) for the next page of devices; empty on the last page."`
	PerPhase []int    `json:"per_phase,omitempty" doc:"The number of devices in each phase."`
	Busy     []string `json:"busy,omitempty" doc:"Devices left out by skip_busy because another task is upgrading the module on them (at most 1000)."`
	// BusyTotal counts every busy device when Busy is cut short.
	BusyTotal int `json:"busy_total,omitempty" doc:"The number of busy devices left out."`
	// Unreported counts the targeted devices that never reported a version.
	Unreported int `json:"unreported" doc:"How many of the targeted devices have never reported a version of the module: their jobs await the report, then proceed or end cancelled with code version_not_eligible."`
}

// RetriedTask is a task after retry-failed, with the number of jobs put
// back in the queue.
type RetriedTask struct {
	ota.Task
	Requeued int `json:"requeued" doc:"The number of failed or timed-out jobs put back in the queue."`
}

// CancelledDevicesTask is a task after cancel-devices, with the number of
// jobs cancelled.
type CancelledDevicesTask struct {
	ota.Task
	Cancelled int `json:"cancelled" doc:"The number of the devices' jobs cancelled; jobs already installing, rebooting or ended are left as they are."`
}

type taskDevicesInput struct {
	ID   int64 `path:"id" doc:"Task id."`
	Body struct {
		Devices []string `json:"devices" minItems:"1" maxItems:"1000" doc:"Keys of devices that have a job in the task."`
	}
}

type createTaskInput struct {
	PageQuery
	Body TaskCreate
}

// createTaskOutput answers 201 with an ota.Task, or 200 with a TaskPreview
// for a dry run; the operation documents both.
type createTaskOutput struct {
	Status int
	Body   any
}

// TaskEdit is the body of a task change: a partial policy. The fixed
// fields are listed so that trying to change them gets a clear answer.
type TaskEdit struct {
	Policy       map[string]any `json:"policy" doc:"The policy fields to change (a JSON merge patch: null unsets a field)." example:"{\"rate\": 100, \"max_concurrent\": 20}"`
	FirmwareID   *int64         `json:"firmware_id,omitempty" doc:"Fixed: refused. Create a new task for another firmware."`
	Mode         *string        `json:"mode,omitempty" doc:"Fixed: refused."`
	Target       map[string]any `json:"target,omitempty" doc:"Fixed: refused. Create a new task for other devices."`
	Verification *bool          `json:"verification,omitempty" doc:"Fixed: refused."`
}

type updateTaskInput struct {
	ID   int64 `path:"id" doc:"Task id."`
	Body TaskEdit
}

type taskPath struct {
	ID int64 `path:"id" doc:"Task id."`
}

type jobPath struct {
	ID int64 `path:"id" doc:"Job id."`
}

type listTasksInput struct {
	Product  string   `query:"product" doc:"Only tasks of this product."`
	Firmware int64    `query:"firmware" doc:"Only tasks of this firmware id."`
	State    []string `query:"state,explode" doc:"Only tasks in this state (scheduled, running, paused, completed, cancelled, aborted); repeat for several."`
	PageQuery
}

type listTaskJobsInput struct {
	ID    int64    `path:"id" doc:"Task id."`
	State []string `query:"state,explode" doc:"Only jobs in this state (awaiting_version, queued, notified, offered, accepted, downloading, downloaded, awaiting_install_confirmation, installing, rebooting, succeeded, failed, rejected, timed_out, cancelled); repeat for several."`
	PageQuery
}

type listDeviceJobsInput struct {
	Product string `path:"product" doc:"Product key."`
	Device  string `path:"device" doc:"Device key."`
	PageQuery
}

func (a *API) taskRoutes() {
	a.registerCreateTask()
	register(a, ota.RoleViewer, huma.Operation{
		OperationID: "list-tasks", Method: http.MethodGet, Path: Prefix + "/tasks",
		Summary: "List tasks, newest first", Tags: []string{"tasks"},
	}, a.listTasks)
	register(a, ota.RoleViewer, huma.Operation{
		OperationID: "get-task", Method: http.MethodGet, Path: Prefix + "/tasks/{id}",
		Summary: "Get a task", Description: "With its job counts per state, total, current phase, policy and target.",
		Tags: []string{"tasks"},
	}, a.getTask)
	register(a, ota.RoleViewer, huma.Operation{
		OperationID: "list-task-jobs", Method: http.MethodGet, Path: Prefix + "/tasks/{id}/jobs",
		Summary: "List a task's jobs, in job id order", Tags: []string{"tasks"},
	}, a.listTaskJobs)
	register(a, ota.RoleViewer, huma.Operation{
		OperationID: "get-job", Method: http.MethodGet, Path: Prefix + "/jobs/{id}",
		Summary: "Get a job", Tags: []string{"tasks"},
	}, a.getJob)
	register(a, ota.RoleViewer, huma.Operation{
		OperationID: "list-device-jobs", Method: http.MethodGet, Path: Prefix + "/products/{product}/devices/{device}/jobs",
		Summary: "List a device's jobs, oldest first (job id order)", Tags: []string{"tasks", "devices"},
	}, a.listDeviceJobs)
	a.taskActionRoutes()
	register(a, ota.RoleOperator, huma.Operation{
		OperationID: "update-task", Method: http.MethodPatch, Path: Prefix + "/tasks/{id}",
		Summary: "Change a task's policy",
		Description: "A JSON merge patch of a scheduled, running or paused task's policy: each field given replaces the " +
			"task's, null unsets it, others stay. Editable: " + strings.Join(ota.EditablePolicyFields, ", ") +
			". The result is validated as a new task's policy is (400 lists every problem) and applied by the engine at once; " +
			"a new timeout applies to jobs started afterwards. The event of kind task, action policy_changed, records who " +
			"changed what (old -> new). Target, firmware, mode and phases are fixed (400); an ended task answers 409.",
		Tags: []string{"tasks"},
	}, a.updateTask)
}

func (a *API) registerCreateTask() {
	reg := a.huma.OpenAPI().Components.Schemas
	jsonOf := func(t reflect.Type) map[string]*huma.MediaType {
		return map[string]*huma.MediaType{"application/json": {Schema: reg.Schema(t, true, t.Name())}}
	}
	register(a, ota.RoleOperator, huma.Operation{
		OperationID: "create-task", Method: http.MethodPost, Path: Prefix + "/tasks",
		Summary: "Create a task, or preview it (dry_run)",
		Description: "Creates a batch upgrade task (201). With dry_run it creates nothing and answers 200 with the devices " +
			"it would target, paged by limit and after. Answers 409 when devices are already being upgraded on the module " +
			"by another task (details lists them; skip_busy leaves them out), or when the firmware must be verified first; " +
			"400 for an invalid name, target or policy, or an end time in the past (errors lists every problem, each at its location in the body).",
		Tags: []string{"tasks"}, DefaultStatus: http.StatusCreated, MaxBodyBytes: maxTaskBody,
		Responses: map[string]*huma.Response{
			"201":     {Description: "The task, created.", Content: jsonOf(reflect.TypeFor[ota.Task]())},
			"200":     {Description: "dry_run: what the task would target.", Content: jsonOf(reflect.TypeFor[TaskPreview]())},
			"default": {Description: "Error", Content: map[string]*huma.MediaType{problemType: {}}},
		},
	}, a.createTask)
}

// taskAction is an operator action on a task that answers the task.
type taskAction struct {
	name, summary, doc string
	do                 func(Engine, context.Context, int64) (ota.Task, error)
}

func (a *API) taskActionRoutes() {
	actions := []taskAction{
		{"pause", "Pause a task", "No new job starts; jobs in flight go on.", Engine.Pause},
		{"resume", "Resume a paused task", "", Engine.Resume},
		{"cancel", "Cancel a task", "Queued jobs are cancelled; devices told to upgrade that have not started installing are told it is withdrawn.", Engine.Cancel},
		{"advance", "Open a task's next phase", "For a manual phase gate; 409 in the last phase.", Engine.Advance},
	}
	for _, act := range actions {
		register(a, ota.RoleOperator, huma.Operation{
			OperationID: act.name + "-task", Method: http.MethodPost, Path: Prefix + "/tasks/{id}/" + act.name,
			Summary: act.summary, Description: act.doc, Tags: []string{"tasks"},
		}, func(ctx context.Context, in *taskPath) (*bodyOutput[ota.Task], error) {
			if err := a.needEngine(); err != nil {
				return nil, err
			}
			t, err := act.do(a.engine, ctx, in.ID)
			if err != nil {
				return nil, err
			}
			return bodyOf(t), nil
		})
	}
	register(a, ota.RoleOperator, huma.Operation{
		OperationID: "retry-failed-task", Method: http.MethodPost, Path: Prefix + "/tasks/{id}/retry-failed",
		Summary:     "Retry a task's failed and timed-out jobs",
		Description: "Puts them back in the queue (attempts count on) and runs a completed task again; answers how many were requeued.",
		Tags:        []string{"tasks"},
	}, a.retryFailed)
	register(a, ota.RoleOperator, huma.Operation{
		OperationID: "retry-failed-devices", Method: http.MethodPost, Path: Prefix + "/tasks/{id}/retry-failed-devices",
		Summary:     "Retry the failed and timed-out jobs of some devices of a task",
		Description: "As retry-failed, for the named devices only; a device without a job in the task is refused.",
		Tags:        []string{"tasks"},
	}, a.retryFailedDevices)
	register(a, ota.RoleOperator, huma.Operation{
		OperationID: "cancel-devices", Method: http.MethodPost, Path: Prefix + "/tasks/{id}/cancel-devices",
		Summary: "Cancel the jobs of some devices of a task",
		Description: "Jobs that have not started installing are cancelled, and devices already told to upgrade are told it is withdrawn; " +
			"the task goes on with its other devices. A device without a job in the task is refused.",
		Tags: []string{"tasks"},
	}, a.cancelDevices)
}

func (a *API) retryFailedDevices(ctx context.Context, in *taskDevicesInput) (*bodyOutput[RetriedTask], error) {
	if err := a.needEngine(); err != nil {
		return nil, err
	}
	t, n, err := a.engine.RetryFailedDevices(ctx, in.ID, in.Body.Devices)
	if err != nil {
		return nil, err
	}
	return bodyOf(RetriedTask{Task: t, Requeued: n}), nil
}

func (a *API) cancelDevices(ctx context.Context, in *taskDevicesInput) (*bodyOutput[CancelledDevicesTask], error) {
	if err := a.needEngine(); err != nil {
		return nil, err
	}
	t, n, err := a.engine.CancelDevices(ctx, in.ID, in.Body.Devices)
	if err != nil {
		return nil, err
	}
	return bodyOf(CancelledDevicesTask{Task: t, Cancelled: n}), nil
}

func (a *API) updateTask(ctx context.Context, in *updateTaskInput) (*bodyOutput[ota.Task], error) {
	if err := a.needEngine(); err != nil {
		return nil, err
	}
	patch, err := in.Body.patch()
	if err != nil {
		return nil, err
	}
	t, err := a.engine.UpdatePolicy(ctx, in.ID, patch)
	if err != nil {
		return nil, err
	}
	return bodyOf(t), nil
}

// patch refuses the fixed fields and returns the policy patch field by
// field.
func (b TaskEdit) patch() (map[string]json.RawMessage, error) {
	var fixed []string
	for name, set := range map[string]bool{"firmware_id": b.FirmwareID != nil, "mode": b.Mode != nil, "target": b.Target != nil, "verification": b.Verification != nil} {
		if set {
			fixed = append(fixed, name)
		}
	}
	if len(fixed) > 0 {
		slices.Sort(fixed)
		e := ota.Errorf(ota.EINVALID, "a task's %s cannot be changed: create a new task (and cancel this one) instead", strings.Join(fixed, ", "))
		for _, name := range fixed {
			e.Fields = append(e.Fields, ota.FieldError{Field: name, Message: "a task's " + name + " cannot be changed"})
		}
		return nil, e
	}
	if len(b.Policy) == 0 {
		return nil, ota.Invalid(ota.FieldError{Field: "policy", Message: "nothing to change: give policy fields, e.g. {\"policy\": {\"rate\": 100}}"})
	}
	patch := make(map[string]json.RawMessage, len(b.Policy))
	for k, v := range b.Policy {
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, ota.Errorf(ota.EINVALID, "policy %s: %v", k, err)
		}
		patch[k] = raw
	}
	return patch, nil
}

// needEngine refuses writes when this process runs no rollout engine.
func (a *API) needEngine() error {
	if a.engine == nil {
		return ota.Errorf(ota.EUNAVAILABLE, "the rollout engine is not running: tasks cannot be created or changed now")
	}
	return nil
}

func (a *API) createTask(ctx context.Context, in *createTaskInput) (*createTaskOutput, error) {
	if err := a.needEngine(); err != nil {
		return nil, err
	}
	spec := in.Body.spec()
	if in.Body.DryRun {
		p, err := a.engine.Plan(ctx, spec)
		if err != nil {
			return nil, err
		}
		page, err := previewPage(p, in.page())
		if err != nil {
			return nil, err
		}
		return &createTaskOutput{Status: http.StatusOK, Body: page}, nil
	}
	t, err := a.engine.CreateTask(ctx, spec)
	if err != nil {
		return nil, err
	}
	return &createTaskOutput{Status: http.StatusCreated, Body: t}, nil
}

// spec turns the body into the domain's task request; the engine checks
// every rule of it (ota.TaskSpec.Validate). An absent mode is push.
func (b TaskCreate) spec() ota.TaskSpec {
	mode := b.Mode
	if mode == "" {
		mode = ota.ModePush
	}
	return ota.TaskSpec{
		Name: b.Name, FirmwareID: b.FirmwareID, Mode: mode, Verification: b.Verification,
		Policy: b.Policy, Target: b.Target,
	}
}

// previewPage cuts one page out of a dry run's devices. The cursor is the
// position in the rollout order: the plan is computed again for every page,
// so a page may shift if devices change between calls.
func previewPage(p engine.Preview, page store.Page) (TaskPreview, error) {
	start := 0
	if page.After != "" {
		n, err := strconv.Atoi(page.After)
		if err != nil || n < 0 || n > len(p.Devices) {
			return TaskPreview{}, ota.Errorf(ota.EINVALID, "after %s is not a cursor of this dry run: pass the next value of the previous page", quote(page.After))
		}
		start = n
	}
	limit := page.Limit
	if limit <= 0 {
		limit = store.DefaultPageSize
	}
	end := start + min(limit, store.MaxPageSize, len(p.Devices)-start)
	out := TaskPreview{Total: p.Total, Devices: p.Devices[start:end], PerPhase: p.PerPhase, BusyTotal: len(p.Busy), Unreported: p.Unreported}
	out.Busy = p.Busy[:min(len(p.Busy), maxPreviewBusy)]
	if end < len(p.Devices) {
		out.Next = strconv.Itoa(end)
	}
	if out.Devices == nil {
		out.Devices = []string{}
	}
	return out, nil
}

func (a *API) listTasks(ctx context.Context, in *listTasksInput) (*pageOutput[ota.Task], error) {
	states, err := parseStates(in.State, ota.TaskStates)
	if err != nil {
		return nil, err
	}
	f := store.TaskFilter{Product: in.Product, FirmwareID: in.Firmware, States: states}
	items, next, err := a.store.ListTasks(ctx, f, in.page())
	if err != nil {
		return nil, err
	}
	for i := range items {
		a.addWaiting(&items[i])
	}
	return pageOf(items, next), nil
}

// addWaiting fills in what a live task waits for, which the engine knows
// and the store does not.
func (a *API) addWaiting(t *ota.Task) {
	if a.engine != nil && (t.State == ota.TaskScheduled || t.State == ota.TaskRunning) {
		t.Waiting = a.engine.Waiting(t.ID)
	}
}

// parseStates checks state names against the valid ones, so that a typo is
// an error rather than an empty list.
func parseStates[S ~string](names []string, valid []S) ([]S, error) {
	out := make([]S, 0, len(names))
	for _, n := range names {
		s := S(n)
		if !slices.Contains(valid, s) {
			return nil, ota.Errorf(ota.EINVALID, "state %s is not one of %s", quote(n), joinStates(valid))
		}
		out = append(out, s)
	}
	return out, nil
}

func joinStates[S ~string](states []S) string {
	names := make([]string, len(states))
	for i, s := range states {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// getTask reads what the task waits for before its state: the engine
// stores a state before it plans for it, so the state answered is never
// older than the waiting (a task just created and started is not shown
// scheduled yet outside its window).
func (a *API) getTask(ctx context.Context, in *taskPath) (*bodyOutput[ota.Task], error) {
	var w *ota.Waiting
	if a.engine != nil {
		w = a.engine.Waiting(in.ID)
	}
	t, err := a.store.GetTask(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	if t.State == ota.TaskScheduled || t.State == ota.TaskRunning {
		t.Waiting = w
	}
	return bodyOf(t), nil
}

// listTaskJobs answers 404 for an unknown task rather than an empty list.
func (a *API) listTaskJobs(ctx context.Context, in *listTaskJobsInput) (*pageOutput[ota.Job], error) {
	states, err := parseStates(in.State, ota.JobStates)
	if err != nil {
		return nil, err
	}
	items, next, err := a.store.ListJobs(ctx, store.JobFilter{TaskID: in.ID, States: states}, in.page())
	if err != nil {
		return nil, err
	}
	// Only an empty page asks whether the task exists: a job's task always
	// does (no task is ever deleted), and on PostgreSQL the task and its
	// counts were two more round trips for every page.
	if len(items) == 0 {
		if _, err := a.store.GetTask(ctx, in.ID); err != nil {
			return nil, err
		}
	}
	return pageOf(items, next), nil
}

func (a *API) getJob(ctx context.Context, in *jobPath) (*bodyOutput[ota.Job], error) {
	j, err := a.store.GetJob(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	return bodyOf(j), nil
}

// listDeviceJobs lists the jobs of the device now registered under the key;
// the jobs of a deleted device are kept but no longer listed here.
func (a *API) listDeviceJobs(ctx context.Context, in *listDeviceJobsInput) (*pageOutput[ota.Job], error) {
	d, err := a.store.GetDevice(ctx, in.Product, in.Device)
	if err != nil {
		return nil, err
	}
	items, next, err := a.store.ListJobs(ctx, store.JobFilter{DeviceID: d.ID}, in.page())
	if err != nil {
		return nil, err
	}
	return pageOf(items, next), nil
}

func (a *API) retryFailed(ctx context.Context, in *taskPath) (*bodyOutput[RetriedTask], error) {
	if err := a.needEngine(); err != nil {
		return nil, err
	}
	t, n, err := a.engine.RetryFailed(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	return bodyOf(RetriedTask{Task: t, Requeued: n}), nil
}
