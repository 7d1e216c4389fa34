package engine

import (
	"math"
	"strconv"
	"testing"
)

// A job id on the wire is ours only when it is a plain decimal int64; any
// other text names no job.
func TestParseJobID(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
	}{
		{"12", 12}, {"007", 7}, {"0", 0},
		{strconv.FormatInt(math.MaxInt64, 10), math.MaxInt64},
		{"9223372036854775808", 0}, // one past int64
		{"", 0}, {"+5", 0}, {"-5", 0}, {"1_0", 0}, {"0x10", 0}, {" 5", 0}, {"5 ", 0},
		{"١٢", 0}, // digits, but not ASCII ones
	} {
		if got := parseJobID(tt.in); got != tt.want {
			t.Errorf("parseJobID(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}
