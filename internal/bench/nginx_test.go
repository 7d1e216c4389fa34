package bench

import (
	"strings"
	"testing"
)

const wrkOutput = `Running 5s test @ http://127.0.0.1:8080/firmware.bin
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.10ms    2.01ms  30.12ms   80.00%
    Req/Sec     7.80k   500.00     8.90k    70.00%
  77625 requests in 5.01s, 4.74GB read
Requests/sec:  15494.01
Transfer/sec:      0.95GB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(wrkOutput)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 77625 || r.RequestsPerSecond != 15494.01 || r.BytesPerSecond != 0.95*(1<<30) {
		t.Fatalf("got %+v", r)
	}
	// An error page is faster than a file: any error fails the run.
	for _, bad := range []string{"  Non-2xx or 3xx responses: 12\n", "  Socket errors: connect 0, read 0, write 0, timeout 3\n"} {
		out := strings.Replace(wrkOutput, "Requests/sec:", bad+"Requests/sec:", 1)
		if _, err := parseWrk(out); err == nil || !strings.Contains(err.Error(), strings.TrimSpace(bad)) {
			t.Errorf("%q: err %v, want a failure naming the line", bad, err)
		}
	}
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"); err == nil {
		t.Error("output without figures: no error")
	}
}
