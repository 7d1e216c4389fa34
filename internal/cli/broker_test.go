package cli_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/brokeradmin"
	"github.com/otter-ota/otter/internal/brokeradmin/dynsec"
	"github.com/otter-ota/otter/internal/brokeradmin/dynsec/mosquittotest"
	"github.com/otter-ota/otter/internal/cli"
	"github.com/otter-ota/otter/internal/server"
	"github.com/otter-ota/otter/internal/testcert"
)

// TestBrokerSyncReportsWhatItChanged runs `otter broker sync` against a
// real Mosquitto for a registry made before the switch to the external
// broker: it creates the missing accounts (without passwords, listed as
// needing a new secret), deletes otter's account of a device gone from
// the registry, and changes nothing the second time.
func TestBrokerSyncReportsWhatItChanged(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := server.Start(ctx, server.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	api := client.New(s.HTTPURL(), s.AdminToken())
	if _, err := api.CreateProduct(ctx, client.ProductCreate{Key: "demo"}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"d1", "d2"} {
		if _, err := api.CreateDevice(ctx, "demo", client.DeviceCreate{Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	b := mosquittotest.Start(t)
	admin, err := dynsec.Dial(ctx, dynsec.Config{URL: b.URL(), Username: mosquittotest.AdminUser, Password: mosquittotest.AdminPassword})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.CreateDevice(ctx, brokeradmin.Device{Product: "demo", Key: "gone"}, "old-secret"); err != nil {
		t.Fatal(err)
	}

	sync := func() result {
		var stdout, stderr bytes.Buffer
		env := map[string]string{"OTTER_BROKER_USERNAME": mosquittotest.AdminUser, "OTTER_BROKER_PASSWORD": mosquittotest.AdminPassword}
		code := cli.Execute(t.Context(), []string{"broker", "sync", "--data", dir, "--broker", "mqtt://" + b.Addr},
			cli.Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return env[k] }})
		return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
	}
	r := sync()
	for _, want := range []string{
		"created   demo/d1 (no password yet: rotate its secret)",
		"created   demo/d2 (no password yet: rotate its secret)",
		"deleted   demo/gone",
		"2 registry devices: 2 created (2 need a new secret), 0 repaired, 1 deleted",
		"otter device rotate-secret demo d1",
	} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Fatalf("first sync lacks %q:\n%s", want, r)
		}
	}
	devs, err := admin.List(ctx)
	if err != nil || len(devs) != 2 || devs[0].Key != "d1" || devs[1].Key != "d2" {
		t.Fatalf("broker accounts after sync: %v %v, want demo/d1 and demo/d2", devs, err)
	}
	if r := sync(); r.code != 0 || !strings.Contains(r.stdout, "nothing changed") {
		t.Fatalf("second sync:\n%s", r)
	}
}

// `otter broker sync --broker-ca` reaches an mqtts:// broker whose
// certificate a private CA issued; without it the certificate is refused,
// and with a plain broker the flag is a usage error.
func TestBrokerSyncTrustsThePrivateCA(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := server.Start(ctx, server.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	s.Close() // an empty registry is enough: the sync connects and sets the shared roles
	caFile, certFile, keyFile := testcert.WriteCA(t, t.TempDir())
	b := mosquittotest.StartTLS(t, certFile, keyFile)
	sync := func(broker string, extra ...string) result {
		var stdout, stderr bytes.Buffer
		env := map[string]string{"OTTER_BROKER_USERNAME": mosquittotest.AdminUser, "OTTER_BROKER_PASSWORD": mosquittotest.AdminPassword}
		args := append([]string{"broker", "sync", "--data", dir, "--broker", broker}, extra...)
		code := cli.Execute(t.Context(), args, cli.Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return env[k] }})
		return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
	}
	if r := sync("mqtts://"+b.TLSAddr, "--broker-ca", caFile); r.code != 0 || !strings.Contains(r.stdout, "0 registry devices") {
		t.Fatalf("sync over TLS with --broker-ca:\n%s", r)
	}
	if r := sync("mqtts://" + b.TLSAddr); r.code == 0 || !strings.Contains(r.stderr, "certificate") {
		t.Fatalf("sync over TLS without --broker-ca:\n%s", r)
	}
	if r := sync("mqtt://"+b.Addr, "--broker-ca", caFile); r.code != 2 || !strings.Contains(r.stderr, "--broker-ca is for a broker over TLS") {
		t.Fatalf("sync to a plain broker with --broker-ca:\n%s", r)
	}
}
