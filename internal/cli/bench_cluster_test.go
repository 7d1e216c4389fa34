package cli_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/otter-ota/otter/internal/cli"
)

// The cluster benchmarks' flags are checked before anything starts: each
// bad combination is a usage error naming the flag.
func TestBenchClusterFlagsAreChecked(t *testing.T) {
	const pg = "postgres://postgres@127.0.0.1:5432/test"
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"replicas need the external broker", []string{"bench", "fleet", "--replicas", "2"}, "--replicas needs --broker mosquitto"},
		{"unknown broker", []string{"bench", "fleet", "--broker", "emqx"}, `--broker "emqx": want embedded or mosquitto`},
		{"mosquitto needs PostgreSQL", []string{"bench", "fleet", "--broker", "mosquitto"}, "--broker mosquitto needs --db postgres://"},
		{"mosquitto with SQLite", []string{"bench", "connect", "--broker", "mosquitto", "--db", "otter.db"}, "--broker mosquitto needs --db postgres://"},
		{"no replica", []string{"bench", "connect", "--broker", "mosquitto", "--db", pg, "--replicas", "0"}, "--replicas must be at least 1"},
		{"replicas are processes", []string{"bench", "fleet", "--broker", "mosquitto", "--db", pg, "--in-process"}, "drop --in-process"},
		{"one server to profile", []string{"bench", "fleet", "--broker", "mosquitto", "--db", pg, "--cpuprofile", "x.pprof"}, "--cpuprofile and --trace profile one server"},
		{"one server's download listener", []string{"bench", "fleet", "--broker", "mosquitto", "--db", pg, "--download-http"}, "--download-http is one server's listener"},
		{"devices profile in one process", []string{"bench", "fleet", "--in-process", "--devices-cpuprofile", "d.pprof"}, "--devices-cpuprofile profiles this process"},
		{"accounts need the external broker", []string{"bench", "connect", "--accounts", "api"}, "--accounts needs --broker mosquitto"},
		{"unknown accounts path", []string{"bench", "fleet", "--broker", "mosquitto", "--db", pg, "--accounts", "bulk"}, `--accounts "bulk": want seed or api`},
		{"failover accounts path", []string{"bench", "failover", "--db", pg, "--accounts", "bulk"}, `--accounts "bulk": want seed or api`},
		{"failover needs PostgreSQL", []string{"bench", "failover"}, "--db postgres://... is needed"},
		{"failover needs two replicas", []string{"bench", "failover", "--db", pg, "--replicas", "1"}, "at least 2 replicas"},
		{"failover needs a rate", []string{"bench", "failover", "--db", pg, "--rate", "0"}, "needs a rate limit"},
		{"failover needs runs", []string{"bench", "failover", "--db", pg, "--runs", "0"}, "one run"},
		{"kill before the end", []string{"bench", "failover", "--db", pg, "--devices", "10", "--kill-after", "10"}, "want fewer than the 10 devices"},
		{"failover file size", []string{"bench", "failover", "--db", pg, "--file-size", "lots"}, "--file-size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			env := cli.Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
			if code := cli.Execute(t.Context(), tt.args, env); code != cli.ExitUsage || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("otter %s: exit %d, %q; want %d with %q", strings.Join(tt.args, " "), code, stderr.String(), cli.ExitUsage, tt.want)
			}
		})
	}
}

// --help documents the cluster flags of each benchmark.
func TestBenchClusterHelp(t *testing.T) {
	for cmd, flags := range map[string][]string{
		"fleet":    {"--broker", "--replicas", "--single-node", "--accounts"},
		"connect":  {"--broker", "--replicas", "--single-node", "--accounts"},
		"failover": {"--runs", "--replicas", "--rate", "--kill-after", "--devices", "--db", "--accounts"},
	} {
		var stdout bytes.Buffer
		env := cli.Env{Stdout: &stdout, Stderr: &bytes.Buffer{}, Getenv: func(string) string { return "" }}
		if code := cli.Execute(t.Context(), []string{"bench", cmd, "--help"}, env); code != cli.ExitOK {
			t.Fatalf("otter bench %s --help: exit %d", cmd, code)
		}
		for _, f := range flags {
			if !strings.Contains(stdout.String(), f) {
				t.Errorf("otter bench %s --help does not mention %s", cmd, f)
			}
		}
	}
}
