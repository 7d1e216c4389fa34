package engine

import (
	"fmt"
	"strings"
	"testing"
)

// The busy-device conflict names the task holding each device, counts in
// the right number, and names no CLI flag (API users read it too).
func TestBusyError(t *testing.T) {
	many := make([]string, maxListed+2)
	holder := map[string]int64{}
	for i := range many {
		many[i] = fmt.Sprintf("d%02d", i)
		holder[many[i]] = int64(7 + i%2)
	}
	tests := []struct {
		name   string
		keys   []string
		holder map[string]int64
		want   string
	}{
		{"one device", []string{"d1"}, map[string]int64{"d1": 3},
			"1 device is already being upgraded on module m by another task: d1 (task 3); wait for that task to end, cancel it, or leave the busy devices out"},
		{"two tasks", []string{"d1", "d2"}, map[string]int64{"d1": 3, "d2": 4},
			"2 devices are already being upgraded on module m by another task: d1 (task 3), d2 (task 4); wait for those tasks to end, cancel them, or leave the busy devices out"},
		{"many", many, holder, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := busyError("m", tt.keys, tt.holder).Error()
			if tt.want == "" {
				tt.want = "52 devices are already being upgraded on module m by another task: d00 (task 7), d01 (task 8), "
				if !strings.HasPrefix(got, tt.want) || !strings.HasSuffix(got, "d49 (task 8) and 2 more; wait for those tasks to end, cancel them, or leave the busy devices out") {
					t.Errorf("got %q", got)
				}
			} else if got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
			if strings.Contains(got, "--") {
				t.Errorf("names a flag: %q", got)
			}
		})
	}
}
