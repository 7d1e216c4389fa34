package mqtt

import (
	"errors"
	"fmt"
	"log/slog"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/enos"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/sdk/wire"
)

// refusal is why a CONNECT is refused: the metric label, the CONNACK codes
// for MQTT 5 and 3.1.1 with the reason string an MQTT 5 client sees, and
// the error for the log. The client is never told whether the device
// exists.
type refusal struct {
	reason string
	v5, v3 byte
	text   string
	err    error
}

func (r *refusal) Error() string { return "refused at connect: " + r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

// CONNACK codes. mochi would answer a wrong password with 0x05 (not
// authorized) to MQTT 3.1.1 clients; 0x04 (bad user name or password) is
// what 3.1.1 defines for it.
const (
	v5BadCredentials = 0x86
	v3BadCredentials = 0x04
	v5NotAuthorized  = 0x87
	v3NotAuthorized  = 0x05
	v5Unavailable    = 0x88
	v3Unavailable    = 0x03
	v5QuotaExceeded  = 0x97
)

func badCredentials(reason string, err error) *refusal {
	return &refusal{reason: reason, v5: v5BadCredentials, v3: v3BadCredentials,
		text: "bad user name or password: use {product}/{device} and the device secret", err: err}
}

// authenticate checks a CONNECT: user name {product}/{device}, password the
// device secret (or an EnOS login, whose user name is {device}&{product}:
// checkEnOS), and a will (if any) inside the device's own tree. On
// success it records the device on the connection and moves the client id
// into the device's namespace, so that one device can never take over
// another's session by using its client id.
func (b *Broker) authenticate(cl *mochi.Client, pk packets.Packet) error {
	c, ok := connOf(cl)
	if !ok {
		return errors.New("mqtt: client without a device connection")
	}
	username := string(pk.Connect.Username)
	var login *enos.Login
	product, key, err := wire.ParseUsername(username)
	clientID := cl.ID
	if enos.IsLogin(username) {
		var l enos.Login
		l, err = enos.ParseLogin(cl.ID, username)
		product, key, login, clientID = l.Product, l.Device, &l, l.ClientID // login is set even on error: the refusal speaks EnOS
	}
	if err != nil {
		r := badCredentials(refusedUsername, err)
		if login != nil {
			r = enosRefusal(refusedUsername, err.Error(), err)
		}
		b.refuse(cl, r)
		return r
	}
	c.client.Store(cl)
	b.sessions.register(wire.Username(product, key), c)
	var d *engine.Device
	var r *refusal
	if login != nil {
		c.enos.Store(true)
		d, r = b.checkEnOS(*login, pk)
	} else {
		d, r = b.check(product, key, pk)
	}
	if r == nil && c.revoked.Load() {
		r = badCredentials(refusedSecret, fmt.Errorf("device %s/%s: credentials changed while logging in", product, key))
	}
	if r != nil {
		b.refuse(cl, r)
		return r
	}
	if pk.Connect.WillFlag && !mayPublish(d, login != nil, pk.Connect.WillTopic) {
		r := &refusal{reason: refusedWill, v5: v5NotAuthorized, v3: v3NotAuthorized,
			text: "the will topic must be one of the device's own topics", err: fmt.Errorf("device %s/%s: will topic %q is outside the device's own topics (%s#)", d.Product, d.Key, wire.Clip(pk.Connect.WillTopic, maxQuoted), tree(d))}
		b.refuse(cl, r)
		return r
	}
	// An EnOS client id carries the login's timestamp after a '|': the
	// part before it names the session, so a reconnect takes it over.
	id := wire.Username(d.Product, d.Key) + ":" + clientID
	_, takeover := b.srv.Clients.Get(id) // replaces a connection, so never adds one for long
	release, ok := b.limit.take(d.ID, takeover)
	if !ok {
		r := &refusal{reason: refusedTooMany, v5: v5QuotaExceeded, v3: v3Unavailable,
			text: fmt.Sprintf("the device has %d connections open already: close them or wait until they end", b.limit.max),
			err:  fmt.Errorf("device %s/%s: over the limit of %d connections", d.Product, d.Key, b.limit.max)}
		b.refuse(cl, r)
		return r
	}
	c.slot = release
	c.dev.Store(d)
	b.supersede(d)
	cl.ID = id
	b.dropStaleSession(cl.ID, d)
	return nil
}

// check looks the device up and compares the secret.
func (b *Broker) check(product, key string, pk packets.Packet) (*engine.Device, *refusal) {
	creds, r := b.lookup(product, key)
	if r != nil {
		return nil, r
	}
	if !pk.Connect.PasswordFlag || !credential.Equal(creds.SecretHash, string(pk.Connect.Password)) {
		return nil, badCredentials(refusedSecret, fmt.Errorf("device %s: wrong secret", wire.Username(product, key)))
	}
	return &engine.Device{ID: creds.DeviceID, Product: product, Key: key}, nil
}

// lookup reads what a device's login is checked against.
func (b *Broker) lookup(product, key string) (ota.DeviceCredentials, *refusal) {
	ctx, cancel := b.call()
	defer cancel()
	creds, err := b.cfg.Credentials.Credentials(ctx, product, key)
	switch {
	case ota.ErrorCode(err) == ota.ENOTFOUND:
		return creds, badCredentials(refusedUnknown, fmt.Errorf("no device %q in product %q", key, product))
	case err != nil:
		return creds, &refusal{reason: refusedUnavailable, v5: v5Unavailable, v3: v3Unavailable,
			text: "server unavailable: connect again later", err: fmt.Errorf("device %s: look up credentials: %w", wire.Username(product, key), err)}
	}
	return creds, nil
}

// refuse answers a refused CONNECT with the code of its protocol version;
// mochi closes the connection when OnConnect returns the error.
func (b *Broker) refuse(cl *mochi.Client, r *refusal) {
	b.metrics.authFailures.WithLabelValues(r.reason).Inc()
	b.refused.Do(func() {
		level := slog.LevelInfo
		if r.reason == refusedUnavailable {
			level = slog.LevelWarn
		}
		b.log.Log(b.base, level, "mqtt: connection refused", "reason", r.reason, "remote", cl.Net.Remote,
			"err", r.err)
	})
	if cl.Properties.ProtocolVersion == 5 {
		_ = b.srv.SendConnack(cl, packets.Code{Code: r.v5, Reason: r.text}, false, nil)
		return
	}
	_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: r.v3})
}

// maxQuoted bounds device input quoted in a log line or message.
const maxQuoted = 100
