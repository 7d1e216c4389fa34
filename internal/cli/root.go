// Package cli is otter's command line: `otter serve` and the operator
// commands that manage a server through its REST API. Execute runs one
// command line in-process, so tests drive the real CLI with no subprocess.
package cli

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/otter-ota/otter/client"
)

// Defaults of the global flags.
const (
	defaultServer = "http://localhost:8080"
	envServer     = "OTTER_SERVER"
	envToken      = "OTTER_TOKEN"
)

// Exit codes of Execute.
const (
	ExitOK    = 0 // the command succeeded
	ExitError = 1 // the command failed (server error, network, file)
	ExitUsage = 2 // the command line is wrong
)

// Env is what a command line runs with: its streams and its environment.
// Passing them in lets tests run commands in-process.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads an environment variable; nil reads none.
	Getenv func(key string) string
}

// OSEnv returns the Env of the running process.
func OSEnv() Env {
	return Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
}

// Execute runs the otter command line args (without the program name) and
// returns the process exit code: ExitOK, ExitError or ExitUsage. Errors are
// written to env.Stderr, prefixed with "otter: ".
func Execute(ctx context.Context, args []string, env Env) int {
	a := newApp(env)
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(env.Stderr, "otter: %v\nRun '%s --help' for usage.\n", err, cmd.CommandPath())
		return ExitUsage
	}
	fmt.Fprintf(env.Stderr, "otter: %s\n", a.explain(err))
	return ExitError
}

// app holds the global flags and what every command needs.
type app struct {
	env    Env
	server string
	token  string
	output string
	now    func() time.Time
}

func newApp(env Env) *app {
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	if env.Stdin == nil {
		env.Stdin = strings.NewReader("")
	}
	return &app{env: env, now: time.Now}
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "otter",
		Short: "Firmware over-the-air upgrades for device fleets",
		Long: `otter manages firmware upgrades for fleets of devices.

Run "otter serve" to start a server; the other commands manage a running
server through its REST API, with the token given by --token or OTTER_TOKEN.`,
		Example: `  otter serve
  export OTTER_TOKEN=otr_...
  otter product create demo --name "Demo board"
  otter device create demo d1 --tag site=paris
  otter firmware add --product demo --version 1.1.0 --file fw.bin`,
		Args:              a.noSubcommand,
		RunE:              a.noSubcommand,
		PersistentPreRunE: a.checkGlobalFlags,
		SilenceErrors:     true,
		SilenceUsage:      true,
	}
	root.SuggestionsMinimumDistance = 2
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&a.server, "server", "", "server URL (env "+envServer+", default "+defaultServer+")")
	pf.StringVar(&a.token, "token", "", "API token (env "+envToken+")")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table or json (csv for task jobs)")
	root.AddCommand(
		a.serveCommand(),
		a.productCommand(),
		a.deviceCommand(),
		a.firmwareCommand(),
		a.signingKeyCommand(),
		a.tokenCommand(),
		a.eventsCommand(),
		a.taskCommand(),
		a.simulateCommand(),
		a.benchCommand(),
		a.blobCommand(),
		a.brokerCommand(),
		a.serverCommand(),
	)
	return root
}

func (a *app) checkGlobalFlags(cmd *cobra.Command, _ []string) error {
	switch {
	case a.output == "csv" && cmd.Annotations[annotCSV] == "":
		return usageErrorf("-o csv is for otter task jobs only: use table or json")
	case a.output != "table" && a.output != "json" && a.output != "csv":
		return usageErrorf("unknown output format %q: use table or json (or csv for task jobs)", a.output)
	}
	return nil
}

// annotCSV marks the commands that print CSV with -o csv.
const annotCSV = "otter/csv"

// noSubcommand answers a command group run without (or with an unknown)
// subcommand; it serves as both Args and RunE, so that a typo is a usage
// error rather than a silent help page.
func (a *app) noSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		if !cmd.HasParent() {
			return cmd.Help()
		}
		return usageErrorf("missing command: one of %s", strings.Join(subcommandNames(cmd), ", "))
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %q?)", s[0])
	}
	return &usageError{errors.New(msg)}
}

func subcommandNames(cmd *cobra.Command) []string {
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	return names
}

// group returns a command that only holds subcommands.
func (a *app) group(use, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Args: a.noSubcommand, RunE: a.noSubcommand}
	cmd.AddCommand(subs...)
	return cmd
}

// client returns an API client for the server and token the flags or the
// environment name.
func (a *app) client() *client.Client {
	return client.New(a.serverURL(), a.tokenValue(), client.WithUserAgent("otter-cli"))
}

func (a *app) serverURL() string {
	return cmp.Or(a.server, a.env.Getenv(envServer), defaultServer)
}

func (a *app) tokenValue() string {
	return cmp.Or(a.token, a.env.Getenv(envToken))
}

// explain turns err into the one line the operator reads, with a hint for
// the mistakes a first run makes.
func (a *app) explain(err error) string {
	var ae *client.Error
	switch {
	case errors.As(err, &ae) && ae.Status == 401 && a.tokenValue() == "":
		return err.Error() + "; give a token with --token or " + envToken
	case errors.Is(err, syscall.ECONNREFUSED):
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is in the message already
		}
		return fmt.Sprintf("no otter server answers at %s (set --server or %s): %v", a.serverURL(), envServer, err)
	case errors.Is(err, context.Canceled):
		return "interrupted"
	case errors.As(err, new(x509.UnknownAuthorityError)):
		return err.Error() + "; for a self-signed server certificate, set SSL_CERT_FILE to its PEM file"
	case ae != nil:
		return err.Error() + flagHint(ae.Detail)
	}
	return err.Error()
}

// flagHints name the flags that act on a server message: the server
// speaks to API users too, so its messages name no flag.
var flagHints = []struct{ in, hint string }{
	{"already being upgraded", "--skip-busy leaves the busy devices out"},
	{"no device matches the task's target", "--dry-run shows what a target selects"},
	{"must be verified before batch use", "otter task create --verify --firmware ID --devices D1,D2 runs one"},
	{"the target selects no device", "give --all, --tags, --from-versions or --devices"},
	{"a verification task runs on an explicit device list", "give --devices"},
	{"give explicit from-versions", "give --from"},
}

// flagHint returns the CLI's hint for a server message, or "".
func flagHint(msg string) string {
	for _, h := range flagHints {
		if strings.Contains(msg, h.in) {
			return "; " + h.hint
		}
	}
	return ""
}

// usageError is a mistake in the command line; Execute exits with
// ExitUsage and points at the command's help.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// needArgs checks that a command got exactly the named positional
// arguments, and names the missing ones.
func needArgs(names ...string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return usageErrorf("missing %s", strings.Join(names[len(args):], " "))
		case len(args) > len(names):
			return usageErrorf("unexpected argument %q", args[len(names)])
		}
		return nil
	}
}
