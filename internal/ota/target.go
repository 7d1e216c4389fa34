package ota

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"

	"github.com/otter-ota/otter/sdk/wire"
)

// Validate checks that t selects something and that its fields are usable,
// and reports every problem (see TaskSpec.Validate).
func (t Target) Validate() error { return invalid(t.problems()) }

// maxKeyProblems bounds the problems reported about one list of keys: a
// pasted list of half a million bad keys must not make a problem as large.
const maxKeyProblems = 10

func (t Target) problems() []FieldError {
	var out []FieldError
	if t.selectsNothing() {
		out = append(out, FieldError{"target", "the target selects no device: set all, devices, tags or from_versions (percent and dynamic only narrow or extend one of these)"})
	}
	if t.Percent != 0 && !(t.Percent > 0 && t.Percent <= 100) {
		out = append(out, FieldError{"target.percent", fmt.Sprintf("target percent %g must be above 0 and at most 100", t.Percent)})
	}
	out = append(out, t.deviceProblems()...)
	out = append(out, tagProblems(t.Tags)...)
	for _, v := range t.FromVersions {
		if reason := checkVersionText(v); reason != "" {
			out = append(out, FieldError{"target.from_versions", fmt.Sprintf("target from-version %s is not usable: %s", quoteInput(v), reason)})
		}
	}
	return out
}

// deviceProblems checks the keys of the device list (wire.KeyRule) and that
// none is listed twice.
func (t Target) deviceProblems() []FieldError {
	var out []FieldError
	bad := 0
	seen := make(map[string]bool, len(t.Devices))
	for i, d := range t.Devices {
		var msg string
		if err := wire.CheckKey("device key", d); err != nil {
			msg = fmt.Sprintf("target device %d: %s", i+1, wireMessage(err))
		} else if seen[d] {
			msg = fmt.Sprintf("target lists device %s twice", quoteInput(d))
		}
		seen[d] = true
		if msg == "" {
			continue
		}
		if bad++; bad <= maxKeyProblems {
			out = append(out, FieldError{"target.devices", msg})
		}
	}
	if n := bad - maxKeyProblems; n > 0 {
		out = append(out, FieldError{"target.devices", fmt.Sprintf("and %s of the target's devices", Plural(n, "more problem", "more problems"))})
	}
	return out
}

// tagProblems checks the tags a target selects by as device tags are
// checked: names by wire.KeyRule, values by wire.TagValueRule, at most
// MaxTags.
func tagProblems(tags map[string]string) []FieldError {
	var out []FieldError
	if len(tags) > MaxTags {
		out = append(out, FieldError{"target.tags", fmt.Sprintf("%d tags given: at most %d are allowed", len(tags), MaxTags)})
		return out
	}
	for _, name := range slices.Sorted(maps.Keys(tags)) {
		err := wire.CheckKey("tag name", name)
		if err == nil {
			err = wire.CheckTagValue(name, tags[name])
		}
		if err != nil {
			out = append(out, FieldError{"target.tags", wireMessage(err)})
		}
	}
	return out
}

// Matches reports whether t selects device d for firmware fw: same product,
// a current version of fw's module that fw upgrades from, every tag equal,
// one of the from-versions and devices if listed, and inside the percent
// sample if set. A target that selects nothing (see Validate) matches no
// device.
//
// The percent sample is per device (SampleRank below a threshold), so a
// task gets close to, not exactly, the percentage of the devices; it is
// stable for a Target.Seed, so a dynamic task keeps deciding the same way.
func (t Target) Matches(d Device, fw Firmware) bool {
	return t.UpgradesFrom(d.Versions[fw.Module], fw) && t.selects(d, fw)
}

// Awaits reports whether t selects device d for firmware fw but for its
// version of fw's module, which d has never reported: d is targeted, and
// its job waits for the report to tell whether it applies.
func (t Target) Awaits(d Device, fw Firmware) bool {
	return d.Versions[fw.Module] == "" && t.selects(d, fw)
}

// UpgradesFrom reports whether a device running version of fw's module is
// upgraded by a task with target t: fw upgrades from it, and it is one of
// the from-versions if t lists any.
func (t Target) UpgradesFrom(version string, fw Firmware) bool {
	if !fw.UpgradesFrom(version) {
		return false
	}
	return len(t.FromVersions) == 0 || slices.ContainsFunc(t.FromVersions, func(v string) bool { return SameVersion(version, v) })
}

// selects applies every rule of t but the version ones.
func (t Target) selects(d Device, fw Firmware) bool {
	if d.Product != fw.Product || t.selectsNothing() || !t.matchesTags(d.Tags) {
		return false
	}
	if len(t.Devices) > 0 && !slices.Contains(t.Devices, d.Key) {
		return false
	}
	return t.Percent == 0 || InSample(SampleRank(t.Seed, d.Product, d.Key), t.Percent)
}

// selectsNothing reports whether no selector is set: such a target is a
// mistake, never "every device" (that is All). Percent and Dynamic select
// nothing by themselves: they narrow or extend a selection.
func (t Target) selectsNothing() bool {
	return !t.All && len(t.Devices) == 0 && len(t.Tags) == 0 && len(t.FromVersions) == 0
}

func (t Target) matchesTags(tags map[string]string) bool {
	for k, want := range t.Tags {
		if got, ok := tags[k]; !ok || got != want {
			return false
		}
	}
	return true
}

// SampleRank returns a stable pseudo-random rank of a device for a task:
// the first 8 bytes of SHA-256 over the length-prefixed seed, product and
// device key. It decides percent samples and orders a rollout (lowest rank
// first), so every replica and every restart agrees on both.
func SampleRank(taskSeed, product, deviceKey string) uint64 {
	return NewRanker(taskSeed, product).Rank(deviceKey)
}

// Ranker computes SampleRank for the devices of one seed and product,
// without hashing the common prefix's formatting again for each device
// (a task over a million devices ranks them all).
type Ranker struct {
	buf    []byte
	prefix int
}

// NewRanker returns the Ranker of a seed and a product.
func NewRanker(taskSeed, product string) *Ranker {
	r := &Ranker{}
	r.buf = appendPrefixed(appendPrefixed(r.buf, taskSeed), product)
	r.prefix = len(r.buf)
	return r
}

// Rank is SampleRank(seed, product, deviceKey). A Ranker is not safe for
// use by several goroutines at once.
func (r *Ranker) Rank(deviceKey string) uint64 {
	r.buf = appendPrefixed(r.buf[:r.prefix], deviceKey)
	sum := sha256.Sum256(r.buf)
	return binary.BigEndian.Uint64(sum[:8])
}

// appendPrefixed appends s with its length before it: "3:abc".
func appendPrefixed(b []byte, s string) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	return append(append(b, ':'), s...)
}

// InSample reports whether a device of rank is inside a percent sample:
// its rank falls in the lowest percent of the uint64 range.
func InSample(rank uint64, percent float64) bool {
	if percent >= 100 {
		return true
	}
	if !(percent > 0) {
		return false
	}
	threshold := math.Ldexp(percent/100, 64)
	return float64(rank) < threshold
}

// PhaseOf returns the phase of the device at index (0-based, in rollout
// order) among total devices, for cumulative percentages phases (e.g.
// [1, 10, 100]). Phase i ends at ceil(phases[i]% of total), and the first
// phase holds at least one device when total > 0 so that a canary always
// exists. Without phases everything is phase 0; an index beyond total is
// in the last phase.
func PhaseOf(index, total int, phases []float64) int {
	for i := range phases {
		if index < phaseEnd(i, total, phases) {
			return i
		}
	}
	return max(len(phases)-1, 0)
}

// phaseEnd returns the index one past the last device of phase i.
func phaseEnd(i, total int, phases []float64) int {
	// The small epsilon keeps float noise (0.1*30 = 3.0000000000000004) from
	// rounding a whole count up.
	end := int(math.Ceil(phases[i]*float64(total)/100 - 1e-9))
	if i == 0 {
		end = max(end, 1)
	}
	return min(end, total)
}
