package cli

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

var envInUsage = regexp.MustCompile(`\((OTTER_[A-Z_]+)\)$`)

// TestEveryServeFlagHasAnEnvironmentVariable checks what the README and the
// help promise: each flag of `otter serve` names an OTTER_* variable in its
// help, and that variable sets the flag's default.
func TestEveryServeFlagHasAnEnvironmentVariable(t *testing.T) {
	values := map[string]string{}
	env := Env{Getenv: func(k string) string { return values[k] }}
	plain := newApp(env).serveCommand().Flags()
	plain.VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" {
			return
		}
		m := envInUsage.FindStringSubmatch(f.Usage)
		if m == nil {
			t.Errorf("--%s names no OTTER_* variable at the end of its help: %q", f.Name, f.Usage)
			return
		}
		values[m[1]] = "from-env-" + f.Name
		if f.Value.Type() == "bool" {
			values[m[1]] = "true"
		}
		got := newApp(env).serveCommand().Flags().Lookup(f.Name).DefValue
		if got != values[m[1]] {
			t.Errorf("%s does not set --%s: default %q", m[1], f.Name, got)
		}
		delete(values, m[1])
	})
}

// TestREADMEConfigurationListsEveryServeFlag keeps the README's
// configuration table in step with `otter serve --help`.
func TestREADMEConfigurationListsEveryServeFlag(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, _ := strings.Cut(string(readme), "## Configuration")
	table, _, _ = strings.Cut(strings.TrimLeft(table, "\n"), "\n\n")
	newApp(Env{}).serveCommand().Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" {
			return
		}
		m := envInUsage.FindStringSubmatch(f.Usage)
		for _, want := range []string{"`--" + f.Name + "`", "`" + m[1] + "`"} {
			if !strings.Contains(table, want) {
				t.Errorf("the README's configuration table lacks %s", want)
			}
		}
	})
}
