package ota

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

func TestTargetMatches(t *testing.T) {
	fw := Firmware{Product: "thermo", Module: "default", Version: "1.2.0"}
	dev := func(key, version string, tags map[string]string) Device {
		return Device{Product: "thermo", Key: key, Versions: map[string]string{"default": version}, Tags: tags}
	}
	eu := map[string]string{"region": "eu", "ring": "beta"}
	tests := []struct {
		name string
		tg   Target
		d    Device
		fw   Firmware
		want bool
	}{
		{"all lower", Target{All: true}, dev("a", "1.1.0", nil), fw, true},
		{"all same version", Target{All: true}, dev("a", "1.2.0", nil), fw, false},
		{"all higher", Target{All: true}, dev("a", "1.3.0", nil), fw, false},
		{"never reported", Target{All: true}, Device{Product: "thermo", Key: "a"}, fw, false},
		{"other module", Target{All: true}, Device{Product: "thermo", Key: "a", Versions: map[string]string{"modem": "1.0"}}, fw, false},
		{"other product", Target{All: true}, Device{Product: "fridge", Key: "a", Versions: map[string]string{"default": "1.0"}}, fw, false},
		{"empty target", Target{}, dev("a", "1.1.0", nil), fw, false},
		{"tags match", Target{Tags: map[string]string{"region": "eu"}}, dev("a", "1.1.0", eu), fw, true},
		{"all tags match", Target{Tags: map[string]string{"region": "eu", "ring": "beta"}}, dev("a", "1.1.0", eu), fw, true},
		{"tag differs", Target{Tags: map[string]string{"region": "us"}}, dev("a", "1.1.0", eu), fw, false},
		{"tag missing", Target{Tags: map[string]string{"site": "x"}}, dev("a", "1.1.0", eu), fw, false},
		{"empty tag value needs the tag", Target{Tags: map[string]string{"site": ""}}, dev("a", "1.1.0", eu), fw, false},
		{"from-version listed", Target{FromVersions: []string{"1.0.0", "1.1.0"}}, dev("a", "v1.1.0", nil), fw, true},
		{"from-version not listed", Target{FromVersions: []string{"1.0.0"}}, dev("a", "1.1.0", nil), fw, false},
		{"device listed", Target{Devices: []string{"a", "b"}}, dev("b", "1.1.0", nil), fw, true},
		{"device not listed", Target{Devices: []string{"a"}}, dev("b", "1.1.0", nil), fw, false},
		{"listed but up to date", Target{Devices: []string{"a"}}, dev("a", "1.2.0", nil), fw, false},
		{"firmware from-versions", Target{All: true}, dev("a", "0.9", nil), Firmware{Product: "thermo", Module: "default", Version: "1.2.0", FromVersions: []string{"1.0"}}, false},
		{"percent 100", Target{All: true, Percent: 100}, dev("a", "1.1.0", nil), fw, true},
		{"negative percent", Target{All: true, Percent: -5}, dev("a", "1.1.0", nil), fw, false},
	}
	for _, tt := range tests {
		if got := tt.tg.Matches(tt.d, tt.fw); got != tt.want {
			t.Errorf("%s: Matches = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestTargetAwaits(t *testing.T) {
	fw := Firmware{Product: "thermo", Module: "default", Version: "1.2.0"}
	unreported := func(key string, tags map[string]string) Device {
		return Device{Product: "thermo", Key: key, Tags: tags, Versions: map[string]string{"modem": "3.0"}}
	}
	eu := map[string]string{"region": "eu"}
	tests := []struct {
		name string
		tg   Target
		d    Device
		want bool
	}{
		{"all", Target{All: true}, unreported("a", nil), true},
		{"listed", Target{Devices: []string{"a"}}, unreported("a", nil), true},
		{"not listed", Target{Devices: []string{"b"}}, unreported("a", nil), false},
		{"tags match", Target{Tags: eu}, unreported("a", eu), true},
		{"tags differ", Target{Tags: eu}, unreported("a", nil), false},
		{"from-versions cannot tell yet", Target{FromVersions: []string{"1.0.0"}}, unreported("a", nil), true},
		{"other product", Target{All: true}, Device{Product: "fridge", Key: "a"}, false},
		{"reported", Target{All: true}, Device{Product: "thermo", Key: "a", Versions: map[string]string{"default": "1.0.0"}}, false},
		{"empty target", Target{}, unreported("a", nil), false},
		{"outside the sample", Target{All: true, Percent: 1e-9}, unreported("a", nil), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.tg.Awaits(tt.d, fw); got != tt.want {
				t.Fatalf("Awaits = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTargetPercentSample(t *testing.T) {
	fw := Firmware{Product: "thermo", Module: "default", Version: "2.0"}
	tg := Target{All: true, Percent: 10, Seed: "task-7"}
	other := Target{All: true, Percent: 10, Seed: "task-8"}
	var in, both int
	const n = 20000
	for i := range n {
		d := Device{Product: "thermo", Key: fmt.Sprintf("dev-%05d", i), Versions: map[string]string{"default": "1.0"}}
		m := tg.Matches(d, fw)
		if m != tg.Matches(d, fw) {
			t.Fatalf("sample of %s is not stable", d.Key)
		}
		if m {
			in++
			if other.Matches(d, fw) {
				both++
			}
		}
	}
	if in < n*9/100 || in > n*11/100 {
		t.Errorf("10%% sample took %d of %d devices", in, n)
	}
	// Another seed draws an independent sample: about 10% of the first.
	if both > in*15/100 {
		t.Errorf("samples of two tasks overlap in %d of %d devices", both, in)
	}
}

func TestTargetValidate(t *testing.T) {
	tests := []struct {
		tg  Target
		msg string
	}{
		{Target{All: true}, ""},
		{Target{Devices: []string{"a"}, Percent: 0.5}, ""},
		{Target{}, "selects no device"},
		{Target{All: true, Percent: -1}, "percent -1"},
		{Target{All: true, Percent: math.NaN()}, "percent NaN"},
		{Target{Devices: []string{"a", ""}}, `target device 2: device key "" is not valid: it is empty`},
		{Target{Devices: []string{"a:b"}}, `target device 1: device key "a:b" is not valid`},
		{Target{Percent: 10}, "selects no device"},
		{Target{Dynamic: true}, "selects no device"},
		{Target{Tags: map[string]string{"site": "a,b"}}, "the value of tag site is not valid"},
		{Target{Devices: []string{"a", "a"}}, `lists device "a" twice`},
		{Target{Tags: map[string]string{"": "x"}}, `tag name "" is not valid`},
		{Target{FromVersions: []string{"1.0 "}}, "whitespace"},
	}
	for _, tt := range tests {
		err := tt.tg.Validate()
		if tt.msg == "" && err != nil || tt.msg != "" && (ErrorCode(err) != EINVALID || !strings.Contains(err.Error(), tt.msg)) {
			t.Errorf("Validate(%+v) = %v, want %q", tt.tg, err, tt.msg)
		}
	}
}

func TestSampleRank(t *testing.T) {
	a := SampleRank("seed", "thermo", "dev-1")
	if a != SampleRank("seed", "thermo", "dev-1") {
		t.Fatal("SampleRank is not stable")
	}
	for _, other := range [][3]string{{"seed", "thermo", "dev-2"}, {"seed2", "thermo", "dev-1"}, {"seedt", "hermo", "dev-1"}, {"seed", "thermodev-1", ""}} {
		if SampleRank(other[0], other[1], other[2]) == a {
			t.Errorf("SampleRank%q collides with (seed, thermo, dev-1)", other)
		}
	}
	// A fixed value guards against an accidental change of the hash, which
	// would reshuffle every running rollout after an upgrade of otter.
	if got := SampleRank("", "p", "d"); got != 0x5e6d14bea88b8ab7 {
		t.Errorf(`SampleRank("", "p", "d") = %#x; the rank function changed`, got)
	}
}

func TestInSample(t *testing.T) {
	tests := []struct {
		rank    uint64
		percent float64
		want    bool
	}{
		{0, 0.001, true},
		{math.MaxUint64, 99.999, false},
		{math.MaxUint64, 100, true},
		{1 << 63, 50, false},
		{1<<63 - 1025, 50, true},
		{0, 0, false},
		{0, math.NaN(), false},
	}
	for _, tt := range tests {
		if got := InSample(tt.rank, tt.percent); got != tt.want {
			t.Errorf("InSample(%#x, %g) = %v, want %v", tt.rank, tt.percent, got, tt.want)
		}
	}
}

func TestPhaseOf(t *testing.T) {
	phases := []float64{1, 10, 100}
	tests := []struct {
		index, total int
		phases       []float64
		want         int
	}{
		{0, 1000, phases, 0},
		{9, 1000, phases, 0},
		{10, 1000, phases, 1},
		{99, 1000, phases, 1},
		{100, 1000, phases, 2},
		{999, 1000, phases, 2},
		{0, 5, phases, 0}, // 1% of 5 rounds up to one canary
		{1, 5, phases, 2}, // 10% of 5 is one device, already in phase 0
		{0, 1, phases, 0},
		{0, 30, []float64{10, 100}, 0},
		{2, 30, []float64{10, 100}, 0},
		{3, 30, []float64{10, 100}, 1}, // 10% of 30 is exactly 3
		{5000, 1000, phases, 2},
		{0, 0, phases, 2},
		{7, 100, nil, 0},
	}
	for _, tt := range tests {
		if got := PhaseOf(tt.index, tt.total, tt.phases); got != tt.want {
			t.Errorf("PhaseOf(%d, %d, %v) = %d, want %d", tt.index, tt.total, tt.phases, got, tt.want)
		}
	}
	for total := range 300 {
		checkPhaseOf(t, total, phases)
		checkPhaseOf(t, total, []float64{0.5, 33.3, 66.7, 100})
	}
}

// checkPhaseOf checks the phases PhaseOf gives to all indexes of total:
// never decreasing, a canary in phase 0, and each cumulative phase holding
// at least its share of the devices.
func checkPhaseOf(t *testing.T, total int, phases []float64) {
	t.Helper()
	upTo := make([]int, len(phases)) // devices in phases <= i
	prev := 0
	for i := range total {
		ph := PhaseOf(i, total, phases)
		if ph < prev || ph < 0 || ph >= len(phases) {
			t.Fatalf("PhaseOf(%d, %d, %v) = %d after %d", i, total, phases, ph, prev)
		}
		prev = ph
		for j := ph; j < len(phases); j++ {
			upTo[j]++
		}
	}
	if total > 0 && upTo[0] == 0 {
		t.Fatalf("PhaseOf(_, %d, %v): phase 0 is empty", total, phases)
	}
	for i, p := range phases {
		if float64(upTo[i]) < math.Floor(p*float64(total)/100) || float64(upTo[i]) > math.Ceil(p*float64(total)/100)+1 {
			t.Fatalf("PhaseOf(_, %d, %v): phases <= %d hold %d devices", total, phases, i, upTo[i])
		}
	}
}
