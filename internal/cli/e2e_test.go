package cli_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/otter-ota/otter/internal/cli"
	"github.com/otter-ota/otter/internal/server/servertest"
)

// otter runs the real CLI in-process against a real server.
type otter struct {
	t     *testing.T
	url   string
	token string
}

// startOtter starts a real server (servertest).
func startOtter(t *testing.T) *otter {
	t.Helper()
	s := servertest.Start(t)
	return &otter{t: t, url: s.HTTPURL(), token: s.AdminToken()}
}

// result is what one command line did.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// run executes `otter args...` with OTTER_SERVER and OTTER_TOKEN set.
func (o *otter) run(args ...string) result { return o.runIn("", args...) }

// runIn is run with stdin as standard input.
func (o *otter) runIn(stdin string, args ...string) result {
	o.t.Helper()
	env := map[string]string{"OTTER_SERVER": o.url, "OTTER_TOKEN": o.token}
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(o.t.Context(), time.Minute)
	defer cancel()
	code := cli.Execute(ctx, args, cli.Env{
		Stdin: strings.NewReader(stdin), Stdout: &stdout, Stderr: &stderr,
		Getenv: func(k string) string { return env[k] },
	})
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// ok runs a command that must succeed and returns its standard output.
func (o *otter) ok(args ...string) string {
	o.t.Helper()
	r := o.run(args...)
	if r.code != 0 {
		o.t.Fatalf("otter %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// json runs a command with -o json that must succeed and decodes its
// output, which must be exactly one JSON value, into v.
func (o *otter) json(v any, args ...string) {
	o.t.Helper()
	out := o.ok(append(args, "-o", "json")...)
	reflect.ValueOf(v).Elem().SetZero() // decoding into a used value would merge
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(v); err != nil {
		o.t.Fatalf("otter %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
	if _, err := dec.Token(); err != io.EOF {
		o.t.Fatalf("otter %s: more than one JSON value:\n%s", strings.Join(args, " "), out)
	}
}

// fails runs a command that must fail with code and print want on stderr.
func (o *otter) fails(code int, want string, args ...string) result {
	o.t.Helper()
	r := o.run(args...)
	if r.code != code || !strings.Contains(r.stderr, want) || !strings.HasPrefix(r.stderr, "otter: ") {
		o.t.Fatalf("otter %s: want exit %d and stderr with %q; got %s", strings.Join(args, " "), code, want, r)
	}
	return r
}

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

type device struct {
	Key     string            `json:"key"`
	Product string            `json:"product"`
	Secret  string            `json:"secret"`
	Tags    map[string]string `json:"tags"`
	Online  bool              `json:"online"`
}

func TestProductCommands(t *testing.T) {
	o := startOtter(t)
	var p struct{ Key, Name, Description string }
	o.json(&p, "product", "create", "demo", "--name", "Demo board", "--description", "for tests")
	if p.Key != "demo" || p.Name != "Demo board" || p.Description != "for tests" {
		t.Errorf("created %+v", p)
	}
	if out := o.ok("product", "get", "demo"); !strings.Contains(out, "name:        Demo board\n") {
		t.Errorf("product get:\n%s", out)
	}
	o.fails(1, "(409 conflict)", "product", "create", "demo")
	o.fails(1, "(404 not_found)", "product", "get", "nope")
	o.fails(1, `"Bad Key"`, "product", "create", "Bad Key")

	o.ok("product", "create", "p2")
	var list []struct{ Key string }
	o.json(&list, "product", "list")
	if len(list) != 2 {
		t.Errorf("product list: %+v", list)
	}
	if out := o.ok("product", "list"); !strings.HasPrefix(out, "KEY ") || strings.Count(out, "\n") != 3 {
		t.Errorf("product list table:\n%s", out)
	}
	o.json(&list, "product", "list", "--limit", "1")
	if len(list) != 1 {
		t.Errorf("product list --limit 1: %+v", list)
	}
	if out := o.ok("product", "delete", "p2"); out != "deleted product p2\n" {
		t.Errorf("product delete: %q", out)
	}
	o.fails(1, "(404 not_found)", "product", "delete", "p2")

	var en struct{ Key, Protocol string }
	o.json(&en, "product", "create", "en", "--protocol", "enos")
	if en.Protocol != "enos" {
		t.Errorf("created with --protocol enos: %+v", en)
	}
	if out := o.ok("product", "update", "demo", "--protocol", "enos"); !strings.Contains(out, "protocol:    enos\n") || !strings.Contains(out, "otter device rotate-secret demo KEY") {
		t.Errorf("product update --protocol enos:\n%s", out)
	}
	if out := o.ok("product", "update", "demo", "--name", "Renamed"); !strings.Contains(out, "name:        Renamed\n") || !strings.Contains(out, "protocol:    enos\n") {
		t.Errorf("product update --name kept the protocol?\n%s", out)
	}
	o.fails(1, "protocol", "product", "update", "demo", "--protocol", "mqtt")
	o.fails(2, "give at least one of", "product", "update", "demo")
}

func TestUsageAndConnectionErrors(t *testing.T) {
	o := startOtter(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"product", "create"}, "otter: missing KEY\nRun 'otter product create --help' for usage.\n"},
		{[]string{"device", "get", "demo"}, "otter: missing KEY\nRun 'otter device get --help' for usage.\n"},
		{[]string{"product", "get", "a", "b"}, `otter: unexpected argument "b"`},
		{[]string{"prodcut", "list"}, `otter: unknown command "prodcut" for "otter" (did you mean "product"?)`},
		{[]string{"product"}, "otter: missing command: one of create, delete, get, list, update\n"},
		{[]string{"product", "frob"}, `otter: unknown command "frob" for "otter product"`},
		{[]string{"product", "list", "--bogus"}, "otter: unknown flag: --bogus\n"},
		{[]string{"product", "list", "-o", "yaml"}, `otter: unknown output format "yaml"`},
		{[]string{"product", "list", "--limit", "-1"}, "otter: --limit -1: want 0 (no limit) or more"},
		{[]string{"device", "list", "--online", "maybe"}, `otter: --online "maybe": want true or false`},
		{[]string{"device", "create", "demo", "d1", "--tag", "site"}, `otter: --tag "site": want key=value`},
		{[]string{"device", "tag", "demo", "d1"}, "otter: missing EDIT..."},
		{[]string{"device", "tag", "demo", "d1", "site"}, `otter: tag edit "site": want key=value to set a tag or key- to remove it`},
		{[]string{"firmware", "add", "--product", "demo", "--version", "1.0.0"}, "otter: --file is required"},
		{[]string{"firmware", "get", "x"}, `otter: firmware id "x": want a positive number`},
		{[]string{"firmware", "download", "3"}, "otter: -f is required"},
		{[]string{"firmware", "download", "3", "-f", "-", "-o", "json"}, "cannot be combined with -o json"},
		{[]string{"token", "create"}, "otter: --role is required"},
		{[]string{"token", "create", "--role", "root"}, `otter: --role "root": want viewer, operator or admin`},
		{[]string{"events", "--since", "yesterday"}, `otter: --since "yesterday": want a time`},
		{[]string{"serve", "--max-downloads", "0"}, `otter: --max-downloads (OTTER_MAX_DOWNLOADS): "0" is not a positive number`},
		{[]string{"serve", "--mqtt-max-per-device", "many"}, `otter: --mqtt-max-per-device (OTTER_MQTT_MAX_PER_DEVICE): "many" is not a positive number`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := o.run(tt.args...)
			if r.code != cli.ExitUsage || !strings.Contains(r.stderr, tt.want) || !strings.Contains(r.stderr, "--help' for usage.") || r.stdout != "" {
				t.Errorf("want exit 2 and %q; got %s", tt.want, r)
			}
		})
	}

	if r := o.run(); r.code != 0 || !strings.Contains(r.stdout, "Available Commands:") {
		t.Errorf("otter with no arguments: %s", r)
	}
	if r := o.run("device", "--help"); r.code != 0 || !strings.Contains(r.stdout, "rotate-secret") {
		t.Errorf("otter device --help: %s", r)
	}

	noToken := *o
	noToken.token = ""
	noToken.fails(1, "(401 unauthorized); give a token with --token or OTTER_TOKEN", "product", "list")
	// --token and --server override the environment.
	if r := noToken.run("product", "list", "--token", o.token); r.code != 0 {
		t.Errorf("--token: %s", r)
	}
	o.fails(1, "no otter server answers at http://127.0.0.1:1 (set --server or OTTER_SERVER)", "product", "list", "--server", "http://127.0.0.1:1")
}

func TestDeviceCommands(t *testing.T) {
	o := startOtter(t)
	o.ok("product", "create", "demo")

	r := o.run("device", "create", "demo", "d1", "--tag", "site=paris", "--tag", "ring=beta", "-o", "json")
	var d device
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil || r.code != 0 {
		t.Fatalf("device create: %v\n%s", err, r)
	}
	if d.Key != "d1" || d.Product != "demo" || !hex64.MatchString(d.Secret) || d.Tags["site"] != "paris" {
		t.Errorf("device create -o json: %+v", d)
	}
	// The secret comes right after the device's identity, as in the issue.
	if k, p, s := strings.Index(r.stdout, `"key"`), strings.Index(r.stdout, `"product"`), strings.Index(r.stdout, `"secret"`); !(k < p && p < s) {
		t.Errorf("field order key, product, secret expected:\n%s", r.stdout)
	}
	r = o.run("device", "create", "demo", "d2")
	if r.code != 0 || !regexp.MustCompile(`(?m)^secret: +[0-9a-f]{64}$`).MatchString(r.stdout) || !strings.Contains(r.stderr, "will not be shown again") {
		t.Errorf("device create (table): %s", r)
	}
	o.fails(1, "(409 conflict)", "device", "create", "demo", "d1")

	// device tag merges: sets, overwrites, removes, keeps the rest.
	var tagged, got device
	o.json(&tagged, "device", "tag", "demo", "d1", "site=lyon", "ring-", "zone=eu", "gone-")
	if diff := cmp.Diff(map[string]string{"site": "lyon", "zone": "eu"}, tagged.Tags); diff != "" {
		t.Errorf("tags after device tag (-want +got):\n%s", diff)
	}
	o.json(&got, "device", "get", "demo", "d1")
	if diff := cmp.Diff(tagged, got); diff != "" || got.Secret != "" {
		t.Errorf("device get (-tag +get):\n%s", diff)
	}

	var rotated device
	o.json(&rotated, "device", "rotate-secret", "demo", "d2")
	if !hex64.MatchString(rotated.Secret) {
		t.Errorf("rotate-secret: %+v", rotated)
	}
	var del struct {
		Product, Key string
		Deleted      bool
	}
	o.json(&del, "device", "delete", "demo", "d2")
	if !del.Deleted || del.Key != "d2" {
		t.Errorf("device delete -o json: %+v", del)
	}
	o.fails(1, "(404 not_found)", "device", "get", "demo", "d2")
}

func TestDeviceImportAndPaging(t *testing.T) {
	o := startOtter(t)
	o.ok("product", "create", "demo")

	// From a file, table mode: the secrets as CSV.
	var csv strings.Builder
	csv.WriteString("# 250 devices, more than two pages of the server's default 100\n")
	for i := range 250 {
		fmt.Fprintf(&csv, "dev%03d,site=%s\n", i, []string{"paris", "lyon"}[i%2])
	}
	file := filepath.Join(t.TempDir(), "devices.csv")
	if err := os.WriteFile(file, []byte(csv.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r := o.run("device", "import", "demo", file)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 251 || lines[0] != "key,secret" || !regexp.MustCompile(`^dev000,[0-9a-f]{64}$`).MatchString(lines[1]) {
		t.Fatalf("device import: %d lines\n%s", len(lines), r)
	}
	if !strings.Contains(r.stderr, "Created 250 devices.") {
		t.Errorf("device import stderr: %q", r.stderr)
	}

	// From standard input, JSON mode: the server's answer.
	r = o.runIn("x1,ring=beta\n\nx2\n", "device", "import", "demo", "-", "-o", "json")
	var res struct {
		Created int
		Devices []struct{ Key, Secret string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Created != 2 || res.Devices[1].Key != "x2" {
		t.Fatalf("device import - -o json: %v %+v\n%s", err, res, r)
	}
	if r := o.runIn("y1\ny2,bad\n", "device", "import", "demo", "-"); r.code != 1 || !strings.Contains(r.stderr, "line 2") {
		t.Errorf("bad import line: %s", r)
	}
	o.fails(1, "no such file", "device", "import", "demo", filepath.Join(t.TempDir(), "missing.csv"))

	var all []device
	o.json(&all, "device", "list", "--product", "demo")
	if len(all) != 252 {
		t.Errorf("device list follows the pages: %d devices, want 252", len(all))
	}
	o.json(&all, "device", "list", "--product", "demo", "--limit", "150")
	if len(all) != 150 {
		t.Errorf("device list --limit 150: %d devices", len(all))
	}
	o.json(&all, "device", "list", "--product", "demo", "--tag", "site=lyon", "--online", "false")
	if len(all) != 125 {
		t.Errorf("device list --tag site=lyon --online false: %d devices, want 125", len(all))
	}
	o.json(&all, "device", "list", "--product", "demo", "--online", "true")
	if out := o.ok("device", "list", "--product", "demo", "--online", "true", "-o", "json"); len(all) != 0 || out != "[]\n" {
		t.Errorf("no online device: %q", out)
	}
	o.json(&all, "device", "list", "--prefix", "x")
	if keys := keysOf(all); !slices.Equal(keys, []string{"x1", "x2"}) {
		t.Errorf("device list --prefix x: %v", keys)
	}
	out := o.ok("device", "list", "--product", "demo", "--limit", "3")
	if !strings.HasPrefix(out, "PRODUCT  KEY     ONLINE  LAST SEEN  VERSIONS  TAGS\n") || strings.Count(out, "\n") != 4 {
		t.Errorf("device list table:\n%s", out)
	}
}

func keysOf(ds []device) []string {
	var keys []string
	for _, d := range ds {
		keys = append(keys, d.Key)
	}
	slices.Sort(keys)
	return keys
}

type firmware struct {
	ID             int64
	Product        string
	Module         string
	Version        string
	Size           int64
	SHA256         string
	FromVersions   []string          `json:"from_versions"`
	Params         map[string]string `json:"params"`
	VerifyRequired bool              `json:"verify_required"`
	Description    string
	Status         string
}

func TestFirmwareCommands(t *testing.T) {
	o := startOtter(t)
	o.ok("product", "create", "demo")
	dir := t.TempDir()
	data := bytes.Repeat([]byte("otter firmware "), 100_000)
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:])
	file := filepath.Join(dir, "fw.bin")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}

	var fw firmware
	o.json(&fw, "firmware", "add", "--product", "demo", "--version", "1.1.0", "--file", file, "--sha256", hash,
		"--from", "1.0.0,1.0.1", "--param", "reboot=soft", "--param", "url=http://x/?a=b", "--verify-required", "--description", "fixes")
	want := firmware{ID: fw.ID, Product: "demo", Module: "default", Version: "1.1.0", Size: int64(len(data)), SHA256: hash,
		FromVersions: []string{"1.0.0", "1.0.1"}, Params: map[string]string{"reboot": "soft", "url": "http://x/?a=b"},
		VerifyRequired: true, Description: "fixes", Status: "active"}
	if diff := cmp.Diff(want, fw); diff != "" || fw.ID == 0 {
		t.Errorf("firmware add -o json (-want +got):\n%s", diff)
	}
	o.fails(1, "(409 conflict)", "firmware", "add", "--product", "demo", "--version", "1.1.0", "--file", file)
	r := o.fails(1, "(422 mismatch)", "firmware", "add", "--product", "demo", "--version", "1.2.0", "--file", file, "--sha256", strings.Repeat("ab", 32))
	if !strings.Contains(r.stderr, hash) {
		t.Errorf("a wrong --sha256 should name the real hash: %s", r)
	}
	o.fails(1, "no such file", "firmware", "add", "--product", "demo", "--version", "1.3.0", "--file", filepath.Join(dir, "nope.bin"))

	// From standard input, table mode, another module.
	r = o.runIn("modem image", "firmware", "add", "--product", "demo", "--module", "modem", "--version", "2.0.0", "-f", "-")
	if r.code != 0 || !strings.Contains(r.stdout, "module:          modem\n") || !strings.Contains(r.stdout, "size:            11 (11 B)\n") || r.stderr != "" {
		t.Errorf("firmware add from stdin: %s", r)
	}

	var list []firmware
	o.json(&list, "firmware", "list", "--product", "demo")
	if len(list) != 2 {
		t.Errorf("firmware list: %+v", list)
	}
	o.json(&list, "firmware", "list", "--product", "demo", "--module", "modem")
	if len(list) != 1 || list[0].Version != "2.0.0" {
		t.Errorf("firmware list --module modem: %+v", list)
	}
	var got firmware
	o.json(&got, "firmware", "get", fmt.Sprint(fw.ID))
	if diff := cmp.Diff(fw, got); diff != "" {
		t.Errorf("firmware get (-add +get):\n%s", diff)
	}

	out := filepath.Join(dir, "down.bin")
	if msg := o.ok("firmware", "download", fmt.Sprint(fw.ID), "-f", out); !strings.Contains(msg, "saved firmware") {
		t.Errorf("firmware download: %q", msg)
	}
	if b, err := os.ReadFile(out); err != nil || !bytes.Equal(b, data) {
		t.Errorf("downloaded file differs from the uploaded one (err %v)", err)
	}
	if r := o.run("firmware", "download", fmt.Sprint(fw.ID), "-f", "-"); r.code != 0 || r.stdout != string(data) {
		t.Errorf("firmware download -f -: exit %d, %d bytes, stderr %q", r.code, len(r.stdout), r.stderr)
	}
	o.fails(1, "(404 not_found)", "firmware", "download", "999", "-f", filepath.Join(dir, "x.bin"))
	if _, err := os.Stat(filepath.Join(dir, "x.bin")); !os.IsNotExist(err) {
		t.Errorf("a failed download left a file: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("download left temporary files: %v", entries)
	}

	o.ok("firmware", "delete", fmt.Sprint(fw.ID))
	o.fails(1, "(404 not_found)", "firmware", "get", fmt.Sprint(fw.ID))
}

func TestEmptyListsPrintEmptyArrays(t *testing.T) {
	o := startOtter(t)
	for _, args := range [][]string{
		{"product", "list"}, {"device", "list"}, {"firmware", "list"}, {"events", "--kind", "firmware"},
	} {
		if out := o.ok(append(args, "-o", "json")...); out != "[]\n" {
			t.Errorf("otter %s -o json = %q, want []", strings.Join(args, " "), out)
		}
	}
}

func TestTokenCommands(t *testing.T) {
	o := startOtter(t)
	var tok struct {
		Token string
		ID    int64
		Name  string
		Role  string
	}
	r := o.run("token", "create", "--role", "viewer", "--name", "dash", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &tok); err != nil || !strings.HasPrefix(tok.Token, "otr_") || tok.Role != "viewer" {
		t.Fatalf("token create: %v %+v\n%s", err, tok, r)
	}
	if !strings.HasPrefix(r.stdout, "{\n  \"token\": ") {
		t.Errorf("the token should come first, as in the issue:\n%s", r.stdout)
	}

	var list []struct {
		ID        int64
		Name      string
		RevokedAt *time.Time `json:"revoked_at"`
	}
	o.json(&list, "token", "list")
	if len(list) != 2 {
		t.Errorf("token list: %+v", list)
	}

	viewer := *o
	viewer.token = tok.Token
	viewer.ok("product", "list")
	viewer.fails(1, "(403 forbidden)", "product", "create", "x")
	viewer.fails(1, "(403 forbidden)", "token", "list")

	if out := o.ok("token", "revoke", fmt.Sprint(tok.ID)); out != fmt.Sprintf("revoked token %d\n", tok.ID) {
		t.Errorf("token revoke: %q", out)
	}
	viewer.fails(1, "(401 unauthorized)", "product", "list")
	o.json(&list, "token", "list")
	for _, l := range list {
		if l.ID == tok.ID && l.RevokedAt == nil {
			t.Errorf("revoked token listed without revoked_at: %+v", l)
		}
	}
	if out := o.ok("token", "list"); !strings.Contains(out, "dash") || !strings.HasPrefix(out, "ID  NAME") {
		t.Errorf("token list table:\n%s", out)
	}
}

func TestEventsCommand(t *testing.T) {
	o := startOtter(t)
	o.ok("product", "create", "demo")
	o.ok("device", "create", "demo", "d1")
	o.ok("device", "tag", "demo", "d1", "site=paris")

	var events []struct {
		Kind, Action, Product, Device, Actor string
	}
	o.json(&events, "events", "--product", "demo")
	if len(events) < 3 || events[len(events)-1].Kind != "product" || events[0].Kind != "device" {
		t.Errorf("events --product demo (newest first): %+v", events)
	}
	o.json(&events, "events", "--product", "demo", "--limit", "1")
	if len(events) != 1 {
		t.Errorf("events --limit 1: %+v", events)
	}
	o.json(&events, "events", "--kind", "product", "--since", "1h")
	if len(events) != 1 || events[0].Action != "created" {
		t.Errorf("events --kind product --since 1h: %+v", events)
	}
	o.json(&events, "events", "--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	if len(events) != 0 {
		t.Errorf("events in the future: %+v", events)
	}
	if out := o.ok("events", "--device", "d1"); !strings.HasPrefix(out, "TIME ") || !strings.Contains(out, "demo/d1") {
		t.Errorf("events table:\n%s", out)
	}
}
