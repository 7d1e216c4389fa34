package console

import (
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/otter-ota/otter/internal/engine"
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

// taskHints map the engine's messages to the task form's fields. Longer
// prefixes come first: "rate_growth" before "rate".
var taskHints = []fieldHint{
	hint("rate_growth_every", "rate_growth_every"),
	hint("rate_growth", "rate_growth"),
	hint("rate", "rate"),
	hint("max_concurrent", "max_concurrent"),
	hint("phase_success", "phase_success", "phase_success and phase_gate"),
	hint("phase_gate", "phase_gate"),
	hint("phases", "phase", "the last phase"),
	hint("retry_backoff", "retry_backoff", "retry_backoff and retry_on"),
	hint("retry_on", "retry_on"),
	hint("retries", "retries"),
	hint("timeout", "timeout"),
	hint("abort_failure", "abort_failure"),
	hint("abort_min", "abort_min"),
	hint("end", "end"),
	hint("window", "window", "unknown time zone", "time zone"),
	hint("firmware", "firmware"),
	hint("mode", "mode"),
	hint("confirm", "confirm"),
	hint("devices", "a verification task", "~listed devices", "target device", "target lists"),
	hint("skip_busy", "~already being upgraded"),
	hint("tags", "target tag"),
	hint("from_versions", "target from-version"),
	hint("percent", "target percent", "percent"),
	hint("target_all", "a task needs a target", "the target selects no device", "no device matches"),
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

// taskParser reads the task form into a spec, recording a message next to
// each field it cannot read.
type taskParser struct {
	f    *form
	spec engine.TaskSpec
}

// parseTaskForm reads every field of the task form. The spec is usable
// only when f.OK(); the engine still validates it as a whole.
func parseTaskForm(f *form) engine.TaskSpec {
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
