package cli

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/ota"
)

// taskFlags are the flags of `task create` as typed, before parsing.
type taskFlags struct {
	firmware     int64
	name         string
	mode         string
	verify       bool
	dryRun       bool
	devices      []string
	devicesFile  string
	all          bool
	tags         []string
	fromVersions []string
	percent      string
	dynamic      bool
	skipBusy     bool

	start, end      string
	window, tz      string
	rate            int
	rateGrowth      float64
	rateGrowthEvery int
	maxConcurrent   int
	phases          string
	phaseSuccess    string
	phaseGate       string
	retries         int
	retryBackoff    string
	retryOn         []string
	timeout         string
	abortFailure    string
	abortMin        int
	confirm         string
}

// keyReader opens a --devices-file ("-" is standard input).
type keyReader func(name string) (io.ReadCloser, error)

// spec turns the flags into a task creation body. Flags that cannot be
// read are usage errors, found before anything is sent; the task's rules
// (a target that selects devices, valid keys, the policy) are the
// server's, which names every problem (ota.TaskSpec.Validate).
func (f *taskFlags) spec(now time.Time, open keyReader) (client.TaskCreate, error) {
	if f.firmware <= 0 {
		return client.TaskCreate{}, usageErrorf("--firmware is required: the id of the firmware to install (otter firmware list)")
	}
	mode, err := parseMode(f.mode)
	if err != nil {
		return client.TaskCreate{}, err
	}
	target, err := f.target(open)
	if err != nil {
		return client.TaskCreate{}, err
	}
	policy, err := f.policy(now)
	if err != nil {
		return client.TaskCreate{}, err
	}
	return client.TaskCreate{
		Name: f.name, FirmwareID: f.firmware, Mode: mode, Verification: f.verify, Target: target, Policy: policy,
	}, nil
}

func parseMode(s string) (client.Mode, error) {
	switch m := client.Mode(s); m {
	case client.ModePush, client.ModeRequest:
		return m, nil
	}
	return "", usageErrorf("--mode %q: want push or request", s)
}

func (f *taskFlags) target(open keyReader) (client.Target, error) {
	t := client.Target{All: f.all, FromVersions: f.fromVersions, Dynamic: f.dynamic, SkipBusy: f.skipBusy}
	if len(f.devices) > 0 && f.devicesFile != "" {
		return t, usageErrorf("--devices and --devices-file cannot be combined: give the devices one way")
	}
	var err error
	if t.Devices, err = f.deviceKeys(open); err != nil {
		return t, err
	}
	if len(f.tags) > 0 {
		if t.Tags, err = parsePairs("--tags", f.tags); err != nil {
			return t, err
		}
	}
	if f.percent != "" {
		if t.Percent, err = ota.ParsePercent(f.percent); err != nil {
			return t, usageErrorf("--percent: %s", ota.ErrorMessage(err))
		}
	}
	return t, nil
}

func (f *taskFlags) deviceKeys(open keyReader) ([]string, error) {
	if f.devicesFile == "" {
		return f.devices, nil
	}
	r, err := open(f.devicesFile)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return readKeys(r, f.devicesFile)
}

// readKeys reads a devices file: one key per line, blank lines and #
// comments ignored; anything after a comma is ignored, so the CSV file of
// `device import` works as it is.
func readKeys(r io.Reader, name string) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var keys []string
	seen := map[string]int{}
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, _, _ := strings.Cut(line, ",")
		key = strings.TrimSpace(key)
		if first, dup := seen[key]; dup {
			return nil, usageErrorf("--devices-file %s: line %d repeats device %q of line %d", name, n, key, first)
		}
		seen[key] = n
		keys = append(keys, key)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read --devices-file %s: %w", name, err)
	}
	if len(keys) == 0 {
		return nil, usageErrorf("--devices-file %s lists no device", name)
	}
	return keys, nil
}

// policy parses the policy flags into the client's Policy. The rules that
// tie fields together (an end after the start, retries for a backoff, ...)
// are the server's alone (ota.TaskSpec.Validate): it answers every broken
// one.
func (f *taskFlags) policy(now time.Time) (client.Policy, error) {
	p := client.Policy{
		Rate: f.rate, RateGrowth: f.rateGrowth, RateGrowthEvery: f.rateGrowthEvery, MaxConcurrent: f.maxConcurrent,
		PhaseGate: f.phaseGate, Retries: f.retries, RetryOn: f.retryOn, AbortMin: f.abortMin, Confirm: f.confirm,
	}
	for _, parse := range []func(*client.Policy, time.Time) error{f.schedule, f.percents, f.durations} {
		if err := parse(&p, now); err != nil {
			return client.Policy{}, err
		}
	}
	return p, nil
}

func (f *taskFlags) schedule(p *client.Policy, now time.Time) error {
	var err error
	if p.Start, err = parseWhen("--start", f.start, now); err != nil {
		return err
	}
	if p.End, err = parseWhen("--end", f.end, now); err != nil {
		return err
	}
	if f.tz != "" && f.window == "" {
		return usageErrorf("--tz needs --window: it is the time zone of the daily window")
	}
	if f.window != "" {
		w, err := ota.ParseWindow(f.window, f.tz)
		if err != nil {
			return usageErrorf("--window: %s", ota.ErrorMessage(err))
		}
		p.Window = &client.Window{Start: w.Start, End: w.End, TZ: w.TZ}
	}
	return nil
}

func (f *taskFlags) percents(p *client.Policy, _ time.Time) error {
	var err error
	if f.phases != "" {
		if p.Phases, err = ota.ParsePhases(f.phases); err != nil {
			return usageErrorf("--phases: %s", ota.ErrorMessage(err))
		}
	}
	if p.PhaseSuccess, err = optPercent("--phase-success", f.phaseSuccess); err != nil {
		return err
	}
	p.AbortFailure, err = optPercent("--abort-failure", f.abortFailure)
	return err
}

func optPercent(flag, s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	v, err := ota.ParsePercent(s)
	if err != nil {
		return 0, usageErrorf("%s: %s", flag, ota.ErrorMessage(err))
	}
	return v, nil
}

func (f *taskFlags) durations(p *client.Policy, _ time.Time) error {
	var err error
	if p.RetryBackoff, err = optDuration("--retry-backoff", f.retryBackoff); err != nil {
		return err
	}
	p.Timeout, err = optDuration("--timeout", f.timeout)
	return err
}

func optDuration(flag, s string) (client.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, usageErrorf("%s %q: want a duration such as 30s, 10m or 1h30m", flag, s)
	}
	return client.Duration(d), nil
}

// parseWhen reads --start or --end: an RFC 3339 time, "now", or a delay
// from now such as +10m, +2h or +1d.
func parseWhen(flag, s string, now time.Time) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	if s == "now" {
		return &now, nil
	}
	if delay, ok := strings.CutPrefix(s, "+"); ok {
		if d, ok := parseAge(delay); ok {
			t := now.Add(d)
			return &t, nil
		}
	} else if t, err := time.Parse(time.RFC3339, s); err == nil {
		return &t, nil
	}
	return nil, usageErrorf("%s %q: want a time such as 2026-01-02T15:04:05Z, now, or a delay from now such as +10m, +2h or +1d", flag, s)
}
