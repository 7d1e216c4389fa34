package server_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/brokeradmin/dynsec/mosquittotest"
	"github.com/otter-ota/otter/internal/brokerauth"
	"github.com/otter-ota/otter/internal/server"
)

const brokerAuthSecret = "e2e-broker-auth-secret-0123456789"

// brokerAsks posts what an EMQX HTTP authenticator or authorizer sends and
// returns the result it reads.
func (o *otter) brokerAsks(path, body string) string {
	o.t.Helper()
	req, err := http.NewRequest(http.MethodPost, o.srv.HTTPURL()+path, strings.NewReader(body))
	if err != nil {
		o.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(brokerauth.SecretHeader, brokerAuthSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		o.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Result string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		o.t.Fatalf("POST %s: HTTP %d, %v", path, resp.StatusCode, err)
	}
	return out.Result
}

// With OTTER_BROKER_AUTH_SECRET, otter answers a broker's HTTP
// authentication from its registry: a device's secret, rotated or deleted,
// counts at once; its topics are its own; otter's own account passes.
func TestBrokerHTTPAuthenticationFollowsTheRegistry(t *testing.T) {
	b := mosquittotest.Start(t)
	o := startIn(t, t.TempDir(), clusterDB(t), func(c *server.Config) {
		c.Broker = "mqtt://" + b.Addr
		c.BrokerUsername, c.BrokerPassword = mosquittotest.AdminUser, mosquittotest.AdminPassword
		c.BrokerClientID = randomID("otter-test-")
		c.BrokerAuthSecret = brokerAuthSecret
	})
	ctx := o.ctx()
	if _, err := o.api.CreateProduct(ctx, client.ProductCreate{Key: "demo"}); err != nil {
		t.Fatal(err)
	}
	d, err := o.api.CreateDevice(ctx, "demo", client.DeviceCreate{Key: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	login := func(secret string) string {
		return o.brokerAsks(brokerauth.PathAuth, `{"username":"demo/d1","password":"`+secret+`","clientid":"d1"}`)
	}
	if r := login(d.Secret); r != "allow" {
		t.Fatalf("the device's login: %s, want allow", r)
	}
	if r := o.brokerAsks(brokerauth.PathAuth, `{"username":"`+mosquittotest.AdminUser+`","password":"`+mosquittotest.AdminPassword+`"}`); r != "allow" {
		t.Fatalf("otter's own login: %s, want allow", r)
	}
	if r := o.brokerAsks(brokerauth.PathACL, `{"username":"demo/d1","topic":"otter/v1/demo/d1/inform","action":"publish"}`); r != "allow" {
		t.Fatalf("publish in its own tree: %s, want allow", r)
	}
	if r := o.brokerAsks(brokerauth.PathACL, `{"username":"demo/d1","topic":"otter/v1/demo/d2/upgrade","action":"subscribe"}`); r != "deny" {
		t.Fatalf("subscribe to another device's upgrades: %s, want deny", r)
	}
	rotated, err := o.api.RotateDeviceSecret(ctx, "demo", "d1")
	if err != nil {
		t.Fatal(err)
	}
	if r := login(d.Secret); r != "deny" {
		t.Fatalf("the old secret after a rotation: %s, want deny", r)
	}
	if r := login(rotated.Secret); r != "allow" {
		t.Fatalf("the new secret: %s, want allow", r)
	}
	if err := o.api.DeleteDevice(ctx, "demo", "d1"); err != nil {
		t.Fatal(err)
	}
	if r := login(rotated.Secret); r != "deny" {
		t.Fatalf("a deleted device: %s, want deny", r)
	}
}

// A secret too short to be random, or one without --broker, is refused at
// start with the variable named.
func TestBrokerAuthSecretIsCheckedAtStart(t *testing.T) {
	db := clusterDB(t)
	for _, tc := range []struct{ broker, secret, want string }{
		{"mqtt://127.0.0.1:1", "short", "OTTER_BROKER_AUTH_SECRET is 5 characters long"},
		{"", brokerAuthSecret, "OTTER_BROKER_AUTH_SECRET serves the HTTP authentication of an external broker"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s, err := server.Start(ctx, server.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", DBURL: db,
			Broker: tc.broker, BrokerAuthSecret: tc.secret, Logger: slog.New(slog.DiscardHandler)})
		cancel()
		if err == nil {
			s.Close()
			t.Fatalf("started with broker %q and secret %q", tc.broker, tc.secret)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("refusal %q, want it to say %q", err, tc.want)
		}
	}
}
