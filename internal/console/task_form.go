package console

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/api"
	"github.com/otter-ota/otter/internal/ota"
)

// taskFields lists every field of the task form, so that the preview can
// clear or set the error slot of each one.
var taskFields = []string{
	"name", "firmware", "mode", "verification",
	"target_all", "devices", "tags", "from_versions", "percent", "dynamic", "skip_busy",
	"start", "end", "tz", "window",
	"rate", "rate_growth", "rate_growth_every", "max_concurrent",
	"phases", "phase_success", "phase_gate",
	"retries", "retry_backoff", "retry_on", "timeout",
	"abort_failure", "abort_min", "confirm",
}

// newTaskDefaults are the values a new task form starts with: the CLI's
// defaults (pushed, no retries, no timeout, no abort rule, UTC), so a task
// made in the console behaves as one made with "otter task create" unless
// the operator asks for more. Only the target differs: the CLI needs one
// named, the form starts from every device so the preview has something to
// show.
func newTaskDefaults() url.Values {
	return url.Values{
		"mode": {"push"}, "target_all": {"on"}, "tz": {"UTC"}, "phase_gate": {ota.GateAuto},
	}
}

// taskParser reads the task form into the API's body, recording a message
// next to each field it cannot read. The body holds domain types, so the
// form reads each field with the domain's own parsers.
type taskParser struct {
	f    *form
	spec api.TaskCreate
}

// taskBody reads the task form into the body the client sends; ok is false
// when a field could not be read (its message is next to it).
func taskBody(f *form) (body client.TaskCreate, ok bool) {
	spec := parseTaskForm(f)
	if !f.OK() {
		return body, false
	}
	if err := recode(spec, &body); err != nil {
		f.Fail("", err)
		return body, false
	}
	return body, true
}

// recode copies a domain value into the client's type of the same JSON:
// the client mirrors the API's body field for field.
func recode(from, to any) error {
	b, err := json.Marshal(from)
	if err != nil {
		return fmt.Errorf("console: encode %T: %w", from, err)
	}
	if err := json.Unmarshal(b, to); err != nil {
		return fmt.Errorf("console: decode %T: %w", to, err)
	}
	return nil
}

// parseTaskForm reads every field of the task form. The spec is usable
// only when f.OK(); the API still validates it as a whole.
func parseTaskForm(f *form) api.TaskCreate {
	p := &taskParser{f: f}
	p.spec.Name = f.Get("name")
	p.spec.FirmwareID = p.id("firmware", "Choose the firmware to roll out.")
	p.spec.Mode = ota.Mode(f.Get("mode"))
	if !p.spec.Mode.Valid() {
		f.Errors["mode"] = "Choose push (the server sends the upgrade) or request (devices ask)."
	}
	p.spec.Verification = f.Checked("verification")
	p.target()
	p.schedule()
	p.limits()
	p.phases()
	p.retries()
	pol := &p.spec.Policy
	pol.AbortFailure = p.percent("abort_failure")
	pol.AbortMin = p.int("abort_min")
	pol.Confirm = ota.ConfirmMode(f.Get("confirm"))
	if !pol.Confirm.Valid() {
		f.Errors["confirm"] = "Choose none, download, install or both."
	}
	return p.spec
}

func (p *taskParser) target() {
	f, t := p.f, &p.spec.Target
	t.All = f.Checked("target_all")
	t.Devices = splitList(f.Raw("devices"))
	tags, err := parseTags(f.Raw("tags"))
	if err != nil {
		f.Fail("tags", err)
	}
	t.Tags = tags
	t.FromVersions = splitList(f.Raw("from_versions"))
	t.Percent = p.percent("percent")
	t.Dynamic = f.Checked("dynamic")
	t.SkipBusy = f.Checked("skip_busy")
}

func (p *taskParser) schedule() {
	f, pol := p.f, &p.spec.Policy
	tz := f.Get("tz")
	loc, err := ota.Window{Start: "00:00", End: "01:00", TZ: tz}.Location()
	if err != nil {
		f.Fail("tz", err)
		loc = time.UTC
	}
	pol.Start = p.time("start", loc)
	pol.End = p.time("end", loc)
	if w := f.Get("window"); w != "" {
		win, err := ota.ParseWindow(w, tz)
		if err != nil {
			f.Fail("window", err)
		} else {
			pol.Window = &win
		}
	}
}

func (p *taskParser) limits() {
	pol := &p.spec.Policy
	pol.Rate = p.int("rate")
	pol.RateGrowth = p.number("rate_growth")
	pol.RateGrowthEvery = p.int("rate_growth_every")
	pol.MaxConcurrent = p.int("max_concurrent")
}

func (p *taskParser) phases() {
	f, pol := p.f, &p.spec.Policy
	if s := f.Get("phases"); s != "" {
		phases, err := ota.ParsePhases(s)
		if err != nil {
			f.Fail("phases", err)
		}
		pol.Phases = phases
	}
	pol.PhaseSuccess = p.percent("phase_success")
	pol.PhaseGate = f.Get("phase_gate")
	if len(pol.Phases) == 0 && pol.PhaseGate == ota.GateAuto {
		pol.PhaseGate = "" // the form's default, meaningless without phases
	}
}

func (p *taskParser) retries() {
	pol := &p.spec.Policy
	pol.Retries = p.int("retries")
	pol.RetryBackoff = p.duration("retry_backoff")
	pol.RetryOn = splitList(p.f.Raw("retry_on"))
	pol.Timeout = p.duration("timeout")
}

// maxFormInt bounds whole numbers typed in the form: every policy limit is
// far below it, and it keeps conversions exact on every platform.
const maxFormInt = 1 << 31

func (p *taskParser) int(name string) int {
	s := p.f.Get(name)
	if s == "" {
		return 0
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 || v >= maxFormInt {
		p.f.Errors[name] = "Enter a whole number of 0 or more, or leave it empty."
		return 0
	}
	return v
}

func (p *taskParser) id(name, missing string) int64 {
	s := p.f.Get(name)
	v, err := strconv.ParseInt(s, 10, 64)
	if s == "" || err != nil || v <= 0 {
		p.f.Errors[name] = missing
		return 0
	}
	return v
}

func (p *taskParser) number(name string) float64 {
	s := p.f.Get(name)
	if s == "" {
		return 0
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v >= 0 && v <= 1e9) {
		p.f.Errors[name] = "Enter a number of 0 or more, e.g. 2 or 1.5, or leave it empty."
		return 0
	}
	return v
}

func (p *taskParser) percent(name string) float64 {
	s := p.f.Get(name)
	if s == "" {
		return 0
	}
	v, err := ota.ParsePercent(s)
	if err != nil {
		p.f.Errors[name] = "Enter a percentage above 0 and at most 100, e.g. 5 or 0.5, or leave it empty."
		return 0
	}
	return v
}

func (p *taskParser) duration(name string) ota.Duration {
	s := p.f.Get(name)
	if s == "" {
		return 0
	}
	var d ota.Duration
	if err := d.UnmarshalText([]byte(s)); err != nil {
		p.f.Fail(name, err)
		return 0
	}
	return d
}

// dateTimeLayouts are what a datetime-local field sends.
var dateTimeLayouts = []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02 15:04"}

func (p *taskParser) time(name string, loc *time.Location) *time.Time {
	s := p.f.Get(name)
	if s == "" {
		return nil
	}
	for _, layout := range dateTimeLayouts {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			t = t.UTC()
			return &t
		}
	}
	p.f.Errors[name] = "Enter a date and time such as 2026-12-01T02:00, or leave it empty."
	return nil
}

// splitList reads a list separated by commas, spaces or lines.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' || r == ' ' || r == '\t' })
}
