package server_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/brokeradmin/dynsec/mosquittotest"
	"github.com/otter-ota/otter/internal/server"
	"github.com/otter-ota/otter/internal/testcert"
)

// A broker whose certificate a private CA issued: otter refuses it with
// the system's roots, and reaches it, as the dynamic security admin and as
// the uplinks' client, with --broker-ca. Devices use the broker's plain
// listener; their upgrade commands come through otter's TLS connection.
func TestOtterReachesAnMQTTSBrokerThroughAPrivateCA(t *testing.T) {
	db := clusterDB(t)
	dir := t.TempDir()
	caFile, certFile, keyFile := testcert.WriteCA(t, dir)
	b := mosquittotest.StartTLS(t, certFile, keyFile)
	withBroker := func(ca string) func(*server.Config) {
		return func(c *server.Config) {
			c.Broker, c.BrokerCA = "mqtts://"+b.TLSAddr, ca
			c.BrokerUsername, c.BrokerPassword = mosquittotest.AdminUser, mosquittotest.AdminPassword
			c.BrokerAdmin = server.BrokerAdminDynsec
			c.BrokerClientID = randomID("otter-test-")
			c.PublicMQTT = "mqtt://" + b.Addr // for the simulated devices
		}
	}

	// The system's roots do not know the private CA.
	// One data folder for both starts: the first records its signing key.
	data := t.TempDir()
	cfg := server.Config{DataDir: data, HTTPAddr: "127.0.0.1:0", DBURL: db, Logger: slog.New(slog.DiscardHandler)}
	withBroker("")(&cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if s, err := server.Start(ctx, cfg); err == nil {
		s.Close()
		t.Fatal("otter started against a broker whose certificate no trusted CA issued")
	} else if !strings.Contains(err.Error(), "--broker") || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("refusal %q does not name --broker and the certificate", err)
	}

	o := startIn(t, data, db, withBroker(caFile))
	ctx = o.ctx()
	fw, _ := o.firmware("demo", "1.1.0", 16<<10)
	o.fleet(ctx, "demo", 3, nil)
	task, err := o.api.CreateTask(ctx, client.TaskCreate{FirmwareID: fw.ID, Target: client.Target{All: true}})
	if err != nil {
		t.Fatal(err)
	}
	if done := o.waitTask(ctx, task.ID, client.TaskCompleted); done.Counts[client.JobSucceeded] != 3 {
		t.Fatalf("counts %v, want 3 succeeded", done.Counts)
	}
}

// --broker-ca is checked at start, naming the flag: a file with no
// certificate, a missing file, and a broker that is not mqtts:// are
// refused before anything is opened.
func TestBrokerCASettingsAreRefusedAtStart(t *testing.T) {
	db := clusterDB(t)
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	caFile, _, _ := testcert.WriteCA(t, dir)
	for _, tc := range []struct{ name, broker, ca, want string }{
		{"no certificate in the file", "mqtts://127.0.0.1:1", junk, "--broker-ca " + junk + " holds no PEM certificate"},
		{"missing file", "mqtts://127.0.0.1:1", filepath.Join(dir, "absent.pem"), "--broker-ca: open"},
		{"plain broker", "mqtt://127.0.0.1:1", caFile, "--broker-ca is for a broker over TLS"},
		{"no broker", "", caFile, "--broker-ca is for the external broker"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := server.Start(context.Background(), server.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0",
				DBURL: db, Broker: tc.broker, BrokerCA: tc.ca, Logger: slog.New(slog.DiscardHandler)})
			if err == nil {
				s.Close()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("refusal %q, want it to say %q", err, tc.want)
			}
		})
	}
}
