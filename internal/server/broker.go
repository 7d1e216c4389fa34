package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/otter-ota/otter/internal/brokeradmin/dynsec"
	"github.com/otter-ota/otter/internal/brokerauth"
	"github.com/otter-ota/otter/internal/brokerclient"
	"github.com/otter-ota/otter/internal/engine"
)

// BrokerAdminDynsec is --broker-admin's value for Mosquitto's dynamic
// security plugin.
const BrokerAdminDynsec = "dynsec"

// brokerURL parses --broker with the configured credentials.
func (c Config) brokerURL() (u *url.URL, user, password string, err error) {
	return ParseBrokerURL(c.Broker, c.BrokerUsername, c.BrokerPassword)
}

// ParseBrokerURL parses --broker: mqtt://host:port or mqtts://host:port,
// with credentials in the URL or in username and password (which win). It
// returns the URL without its credentials.
func ParseBrokerURL(raw, username, password string) (u *url.URL, user, pass string, err error) {
	u, err = url.Parse(raw)
	if err != nil {
		return nil, "", "", fmt.Errorf("--broker is not a URL: want mqtt://host:port or mqtts://host:port")
	}
	if (u.Scheme != "mqtt" && u.Scheme != "mqtts") || u.Host == "" || u.Port() == "" || strings.Trim(u.Path, "/") != "" {
		return nil, "", "", fmt.Errorf("--broker %q: want mqtt://host:port or mqtts://host:port (user name and password may be in the URL or in OTTER_BROKER_USERNAME and OTTER_BROKER_PASSWORD)", u.Redacted())
	}
	if u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
	}
	if username != "" {
		user = username
	}
	if password != "" {
		pass = password
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, user, pass, nil
}

// checkBrokerFlags refuses, before anything is opened, an external broker
// with SQLite: several replicas share one database, and the engine must
// not run twice on one SQLite file.
func (c Config) checkBrokerFlags(dbKind string) error {
	if c.Broker == "" {
		if c.BrokerCA != "" {
			return errors.New("--broker-ca is for the external broker: give --broker mqtts://host:port too")
		}
		if c.BrokerAuthSecret != "" {
			return errors.New("OTTER_BROKER_AUTH_SECRET serves the HTTP authentication of an external broker: give --broker too")
		}
		return nil
	}
	if s := c.BrokerAuthSecret; s != "" && len(s) < minBrokerAuthSecret {
		return fmt.Errorf("OTTER_BROKER_AUTH_SECRET is %d characters long: use at least %d random ones (e.g. openssl rand -hex 32)", len(s), minBrokerAuthSecret)
	}
	if dbKind == "sqlite" {
		return errors.New("--broker needs --db postgres://...: an external broker is for several replicas, " +
			"and SQLite serves one process only (cluster mode needs PostgreSQL)")
	}
	u, _, _, err := c.brokerURL()
	if err != nil {
		return err
	}
	if _, err := BrokerTLS(u, c.BrokerCA); err != nil {
		return err
	}
	if c.BrokerAdmin != "" && c.BrokerAdmin != BrokerAdminDynsec {
		return fmt.Errorf("--broker-admin %q: want %q (Mosquitto's dynamic security plugin) or nothing (the broker's accounts are managed elsewhere)", c.BrokerAdmin, BrokerAdminDynsec)
	}
	return nil
}

// minBrokerAuthSecret is the shortest OTTER_BROKER_AUTH_SECRET accepted.
const minBrokerAuthSecret = 16

// brokerAuthHandler serves the endpoints a broker with HTTP authentication
// asks, when OTTER_BROKER_AUTH_SECRET is set; nil otherwise. Every replica
// serves them: they only read the registry.
func (s *Server) brokerAuthHandler() (http.Handler, error) {
	if s.cfg.BrokerAuthSecret == "" {
		return nil, nil
	}
	_, user, password, err := s.cfg.brokerURL()
	if err != nil {
		return nil, err
	}
	return brokerauth.Handler(brokerauth.Config{Secret: s.cfg.BrokerAuthSecret, ServiceUser: user, ServicePassword: password,
		Credentials: s.store, Logger: s.log})
}

// BrokerTLS returns the TLS settings for the broker at u: nil for mqtt://,
// and for mqtts:// the system's roots or, with caFile (--broker-ca), the
// certificate authorities in that PEM file only.
func BrokerTLS(u *url.URL, caFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	if u.Scheme != "mqtts" {
		return nil, fmt.Errorf("--broker-ca is for a broker over TLS: --broker %s is not mqtts://", u.Redacted())
	}
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--broker-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("--broker-ca %s holds no PEM certificate", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// brokerTLS is BrokerTLS of the configured broker; checkBrokerFlags has
// already refused what it would.
func (c Config) brokerTLS(u *url.URL) (*tls.Config, error) { return BrokerTLS(u, c.BrokerCA) }

// dialAdmin connects to the broker as the dynamic security admin, makes
// sure of the shared roles, and gives otter's own user the service role
// it needs to subscribe to the devices' uplinks; nil without
// --broker-admin.
func (s *Server) dialAdmin(ctx context.Context) (*dynsec.Admin, error) {
	if s.cfg.BrokerAdmin != BrokerAdminDynsec {
		return nil, nil
	}
	u, user, password, err := s.cfg.brokerURL()
	if err != nil {
		return nil, err
	}
	tc, err := s.cfg.brokerTLS(u)
	if err != nil {
		return nil, err
	}
	a, err := dynsec.Dial(ctx, dynsec.Config{URL: u, Username: user, Password: password, TLS: tc, Log: s.log})
	if err != nil {
		return nil, fmt.Errorf("external MQTT broker (--broker %s, --broker-admin dynsec): %w", u.Redacted(), err)
	}
	if err := a.GrantService(ctx, user); err != nil {
		a.Close()
		return nil, fmt.Errorf("external MQTT broker (--broker %s, --broker-admin dynsec): set up otter's roles "+
			"(is %q the dynamic security admin? see docs/cluster.md): %w", u.Redacted(), user, err)
	}
	return a, nil
}

// dialBroker connects to the external broker as the client of the
// scheduling replica, handing uplinks to devices.
func (s *Server) dialBroker(ctx context.Context, devices engine.Devices) (*brokerclient.Client, error) {
	u, user, password, err := s.cfg.brokerURL()
	if err != nil {
		return nil, err
	}
	id := s.cfg.BrokerClientID
	if id == "" {
		id = DefaultBrokerClientID()
	}
	tc, err := s.cfg.brokerTLS(u)
	if err != nil {
		return nil, err
	}
	c, err := brokerclient.Dial(ctx, brokerclient.Config{
		URL: u, Username: user, Password: password, ClientID: id, TLS: tc,
		Devices: devices, Resolver: s.store, Logger: s.log, Metrics: s.cluster.extM,
	})
	if err != nil {
		return nil, fmt.Errorf("external MQTT broker (--broker %s): %w", u.Redacted(), err)
	}
	return c, nil
}

// DefaultBrokerClientID is the client id at the external broker when
// --broker-client-id is not set. Only the scheduling replica connects, and
// always under this one id: a replica that takes over resumes the session
// of the one that died, with the uplinks it had not acknowledged.
func DefaultBrokerClientID() string { return "otter-scheduler" }
