package sim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/otter-ota/otter/sdk/device"
	"github.com/otter-ota/otter/sdk/wire"
)

// enosDevice is a simulated device that speaks EnOS's device protocol as
// EnOS's device SDKs and their OTA samples do (the facts are in
// docs/protocol-enos.md): a static securemode=2 login with the device
// secret, a version report after every connect, upgrade commands taken on
// a topic it never subscribes to, requests answered on their _reply
// topics, progress as a step 0-100 and failures as steps -1 to -5. It is
// written on raw MQTT, not on otter's SDK, so that a benchmark measures
// what EnOS devices cost the server.
type enosDevice struct {
	key, secret string
	fleet       *Fleet
	hc          *http.Client
	offline     bool
	base        string // "/sys/{productKey}/{deviceKey}/ota/device/"
	ids         atomic.Int64

	mu sync.Mutex
	cm *autopaho.ConnectionManager
	// up is closed when cm is set: a connection can come up before
	// NewConnection returns.
	up       chan struct{}
	rng      *rand.Rand
	version  string
	installs int
	// busy is set while an upgrade runs; installing from the install
	// until the new version runs, when a reconnect must not report the
	// old one (it would look like a rollback).
	busy, installing bool
	// subscribed holds the reply topics subscribed on this connection:
	// the SDKs subscribe to one the first time they send its request.
	subscribed map[string]bool
	waiting    map[string]chan enosReply
}

// enosRequest is an uplink request in EnOS's envelope.
type enosRequest struct {
	ID      string `json:"id"`
	Version string `json:"version"`
	Method  string `json:"method"`
	Params  any    `json:"params"`
}

// enosReply is the answer to a request, on the request's _reply topic.
type enosReply struct {
	ID      json.RawMessage `json:"id"`
	Code    int             `json:"code"`
	Data    json.RawMessage `json:"data"`
	Message string          `json:"message"`
}

// enosFirmware is one firmware as an upgrade command and a getversion
// answer give it.
type enosFirmware struct {
	Version    string `json:"version"`
	Sign       string `json:"sign"`
	SignMethod string `json:"signMethod"`
	FileURL    string `json:"fileUrl"`
	FileSize   int64  `json:"fileSize"`
}

// enosCommand is the upgrade command.
type enosCommand struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params enosFirmware    `json:"params"`
}

// EnOS's progress steps for failures (OTAUpdateFailureCause of the SDKs).
const (
	enosStepUpgradeFailed  = -1
	enosStepDownloadFailed = -2
	enosStepVerifyFailed   = -3
	enosStepWriteFailed    = -4
	enosStepDeclined       = -5
)

// enosSuccess is the reply code of a request that succeeded.
const enosSuccess = 200

// enosReplyTimeout bounds the wait for a reply, as the SDKs' synchronous
// publish does.
const enosReplyTimeout = 30 * time.Second

func (f *Fleet) newEnOSDevice(i int, c credential, hc *http.Client) *enosDevice {
	d := &enosDevice{
		key: c.key, secret: c.secret, fleet: f, hc: hc,
		base:       "/sys/" + f.cfg.Product + "/" + c.key + "/ota/device/",
		up:         make(chan struct{}),
		rng:        rand.New(rand.NewPCG(uint64(i), 0xe705)),
		version:    c.version,
		waiting:    map[string]chan enosReply{},
		subscribed: map[string]bool{},
	}
	d.offline = d.rng.Float64() < f.cfg.OfflineRate
	return d
}

func (d *enosDevice) name() string        { return d.key }
func (d *enosDevice) startsOffline() bool { return d.offline }

func (d *enosDevice) currentVersion() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.version
}

func (d *enosDevice) event(e device.Event) {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	d.fleet.event(d.key, e)
}

// run connects, and reconnects, until ctx ends.
func (d *enosDevice) run(ctx context.Context) error {
	u, err := url.Parse(d.fleet.cfg.Broker)
	if err != nil {
		return fmt.Errorf("broker URL: %w", err)
	}
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		KeepAlive:                     60,
		CleanStartOnInitialConnection: true,
		ConnectTimeout:                20 * time.Second,
		ReconnectBackoff:              d.backoff,
		ConnectPacketBuilder:          d.login,
		OnConnectionUp:                func(*autopaho.ConnectionManager, *paho.Connack) { d.connectionUp(); go d.connected(ctx) },
		OnConnectionDown:              func() bool { d.event(device.Event{Kind: device.EventDisconnected}); return true },
		OnConnectError:                func(err error) { d.event(device.Event{Kind: device.EventConnectError, Err: err}) },
		ClientConfig:                  paho.ClientConfig{OnPublishReceived: []func(paho.PublishReceived) (bool, error){d.receive(ctx)}},
	})
	if err != nil {
		return fmt.Errorf("connect to %s: %w", d.fleet.cfg.Broker, err)
	}
	d.mu.Lock()
	d.cm = cm
	d.mu.Unlock()
	close(d.up)
	if p := d.fleet.cfg.RequestEvery; p > 0 {
		go d.askEvery(ctx, p)
	}
	<-ctx.Done()
	stop, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = cm.Disconnect(stop)
	return nil
}

// backoff waits nothing before the first connection and then up to an
// exponentially growing ceiling (full jitter), capped at RetryCap.
func (d *enosDevice) backoff(attempt int) time.Duration {
	if attempt == 0 {
		return 0
	}
	ceiling := d.fleet.cfg.RetryCap
	if base := 500 * time.Millisecond; attempt < 16 && base<<attempt < ceiling {
		ceiling = base << attempt
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return time.Duration(d.rng.Float64() * float64(ceiling))
}

// login fills in EnOS's static (securemode=2) login afresh for every
// attempt, since the signature covers the time.
func (d *enosDevice) login(cp *paho.Connect, _ *url.URL) (*paho.Connect, error) {
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	cp.ClientID = d.key + "|securemode=2,signmethod=sha256,timestamp=" + ts + "|"
	cp.UsernameFlag, cp.Username = true, d.key+"&"+d.fleet.cfg.Product
	cp.PasswordFlag, cp.Password = true, []byte(enosPassword(d.fleet.cfg.Product, d.key, d.key, ts, d.secret))
	return limitReceive(cp)
}

// enosPassword is EnOS's login signature: the SHA-256, in lower-case hex
// as the Java and Python SDKs write it, of the login parameters sorted by
// name, each name followed by its value, then the device secret. It is a
// plain digest, not an HMAC.
func enosPassword(productKey, deviceKey, clientID, timestamp, secret string) string {
	content := "clientId" + clientID + "deviceKey" + deviceKey + "productKey" + productKey + "timestamp" + timestamp + secret
	sum := sha256.Sum256([]byte(content))
	return hex.EncodeToString(sum[:])
}

// limitReceive keeps paho's per-connection queue of unacknowledged
// messages small, as the device SDK does: its default costs 512 KiB per
// client, and a device receives a handful of messages at most.
func limitReceive(cp *paho.Connect) (*paho.Connect, error) {
	if cp.Properties == nil {
		cp.Properties = &paho.ConnectProperties{}
	}
	rm := uint16(8)
	cp.Properties.ReceiveMaximum = &rm
	return cp, nil
}

// connectionUp starts a fresh connection's state, in autopaho's callback
// so that it comes before the connection's requests and its end: a clean
// session has no subscriptions.
func (d *enosDevice) connectionUp() {
	d.mu.Lock()
	d.subscribed = map[string]bool{}
	d.mu.Unlock()
	d.event(device.Event{Kind: device.EventConnected})
}

// connected reports the version on a fresh connection, as the SDKs'
// samples do after every connect, unless an install is under way.
func (d *enosDevice) connected(ctx context.Context) {
	<-d.up
	d.mu.Lock()
	installing := d.installing
	d.mu.Unlock()
	if !installing {
		d.inform(ctx, nil)
	}
}

// receive routes what the broker delivers: the upgrade command, which the
// device never subscribed to, and replies to its requests.
func (d *enosDevice) receive(ctx context.Context) func(paho.PublishReceived) (bool, error) {
	return func(pr paho.PublishReceived) (bool, error) {
		topic, payload := pr.Packet.Topic, pr.Packet.Payload
		switch rest, ok := strings.CutPrefix(topic, d.base); {
		case !ok:
		case rest == "upgrade":
			var cmd enosCommand
			if err := json.Unmarshal(payload, &cmd); err != nil {
				d.event(device.Event{Kind: device.EventError, Err: fmt.Errorf("upgrade command %.80q: %w", payload, err)})
				break
			}
			d.start(ctx, cmd.Params)
		case strings.HasSuffix(rest, "_reply"):
			d.deliver(payload)
		}
		return true, nil
	}
}

// deliver hands a reply to the request waiting for its id.
func (d *enosDevice) deliver(payload []byte) {
	var r enosReply
	if err := json.Unmarshal(payload, &r); err != nil {
		return
	}
	id := strings.Trim(string(r.ID), `"`)
	d.mu.Lock()
	ch := d.waiting[id]
	delete(d.waiting, id)
	d.mu.Unlock()
	if ch != nil {
		ch <- r
	}
}

// request publishes a request on the topic of kind and waits for its reply.
func (d *enosDevice) request(ctx context.Context, kind, method string, params any) (enosReply, error) {
	return d.requestAcked(ctx, kind, method, params, nil)
}

// requestAcked is request, calling acked (when not nil) once the broker
// has acknowledged the request: otter acknowledges a device message once
// it is stored, as for its own protocol's messages.
func (d *enosDevice) requestAcked(ctx context.Context, kind, method string, params any, acked func()) (enosReply, error) {
	<-d.up
	if err := d.cm.AwaitConnection(ctx); err != nil {
		return enosReply{}, err
	}
	if err := d.subscribeReply(ctx, kind); err != nil {
		return enosReply{}, err
	}
	id := strconv.FormatInt(d.ids.Add(1), 10)
	ch := make(chan enosReply, 1)
	d.mu.Lock()
	d.waiting[id] = ch
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.waiting, id)
		d.mu.Unlock()
	}()
	b, _ := json.Marshal(enosRequest{ID: id, Version: "1.0", Method: method, Params: params})
	if _, err := d.cm.Publish(ctx, &paho.Publish{Topic: d.base + kind, QoS: 1, Payload: b}); err != nil {
		return enosReply{}, fmt.Errorf("publish %s: %w", kind, err)
	}
	if acked != nil {
		acked()
	}
	t := time.NewTimer(enosReplyTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		if r.Code != enosSuccess {
			return r, fmt.Errorf("%s answered code %d: %s", kind, r.Code, r.Message)
		}
		return r, nil
	case <-t.C:
		return enosReply{}, fmt.Errorf("%s: no reply in %s", kind, enosReplyTimeout)
	case <-ctx.Done():
		return enosReply{}, ctx.Err()
	}
}

// subscribeReply subscribes to the reply topic of kind once per
// connection, as the SDKs do before their first request of a kind.
func (d *enosDevice) subscribeReply(ctx context.Context, kind string) error {
	topic := d.base + kind + "_reply"
	d.mu.Lock()
	done := d.subscribed[topic]
	d.mu.Unlock()
	if done {
		return nil
	}
	sa, err := d.cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 1}}})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", topic, err)
	}
	if len(sa.Reasons) > 0 && sa.Reasons[0] >= 0x80 {
		return fmt.Errorf("subscribe %s: refused with reason code 0x%02x", topic, sa.Reasons[0])
	}
	d.mu.Lock()
	d.subscribed[topic] = true
	d.mu.Unlock()
	return nil
}

// inform reports the running version until the server answers it or ctx
// ends; the version is read again before every try, so that a report
// retried across an upgrade does not tell the old version last. The
// informed event, and the succeeded one that done (when not nil) may
// emit, come when the first report is acknowledged, as the device SDK's
// do: the server has stored it then, and may count the job succeeded
// before its reply arrives.
func (d *enosDevice) inform(ctx context.Context, done func()) bool {
	var once sync.Once
	for attempt := 1; ; attempt++ {
		v := d.currentVersion()
		acked := func() {
			once.Do(func() {
				d.event(device.Event{Kind: device.EventInformed, Versions: map[string]string{d.fleet.cfg.Module: v}})
				if done != nil {
					done()
				}
			})
		}
		_, err := d.requestAcked(ctx, "inform", "ota.device.inform", map[string]string{"version": v}, acked)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		wait := d.backoff(attempt)
		d.event(device.Event{Kind: device.EventRetry, Delay: wait, Err: err})
		if !sleep(ctx, wait) {
			return false
		}
	}
}

// progress reports a step (0-100 percent, or a negative failure code),
// trying a few times: the first report of an offered upgrade is also the
// device's confirmation.
func (d *enosDevice) progress(ctx context.Context, step int, desc string) {
	params := map[string]string{"step": strconv.Itoa(step), "desc": desc}
	for attempt := 1; attempt <= 3; attempt++ {
		_, err := d.request(ctx, "progress", "ota.device.progress", params)
		if err == nil || ctx.Err() != nil {
			return
		}
		d.event(device.Event{Kind: device.EventRetry, Err: err})
		if !sleep(ctx, d.backoff(attempt)) {
			return
		}
	}
}

// askEvery asks for the upgradable firmware every period, jittered (EnOS's
// upon-request mode), and takes the first one offered.
func (d *enosDevice) askEvery(ctx context.Context, period time.Duration) {
	for {
		d.mu.Lock()
		wait := time.Duration(float64(period) * (0.5 + d.rng.Float64()))
		busy := d.busy
		d.mu.Unlock()
		if !sleep(ctx, wait) {
			return
		}
		if busy {
			continue
		}
		r, err := d.request(ctx, "getversion", "ota.device.getversion", map[string]any{})
		if err != nil {
			continue
		}
		var offers []enosFirmware
		if err := json.Unmarshal(r.Data, &offers); err != nil {
			d.event(device.Event{Kind: device.EventError, Err: fmt.Errorf("getversion answer %.80q: %w", r.Data, err)})
			continue
		}
		current := d.currentVersion()
		for _, fw := range offers {
			if fw.Version != current {
				d.start(ctx, fw)
				break
			}
		}
	}
}

// start runs an upgrade in the background unless one runs already (a
// command sent again before the first progress report).
func (d *enosDevice) start(ctx context.Context, fw enosFirmware) {
	d.mu.Lock()
	if d.busy {
		d.mu.Unlock()
		d.event(device.Event{Kind: device.EventDuplicate, Version: fw.Version})
		return
	}
	d.busy = true
	d.mu.Unlock()
	go func() {
		d.upgrade(ctx, fw)
		d.mu.Lock()
		d.busy, d.installing = false, false
		d.mu.Unlock()
	}()
}

// upgrade carries out one firmware as EnOS's OTA samples do: download
// fileUrl, check its digest against sign, report steps, "reboot" into the
// new version and report it.
func (d *enosDevice) upgrade(ctx context.Context, fw enosFirmware) {
	e := device.Event{Kind: device.EventUpgrade, Module: d.fleet.cfg.Module, Version: fw.Version}
	d.event(e)
	succeeded := func() {
		e.Kind = device.EventSucceeded
		d.event(e)
	}
	if fw.Version == d.currentVersion() {
		d.inform(ctx, succeeded)
		return
	}
	if !d.confirm(ctx, fw) {
		d.progress(ctx, enosStepDeclined, "the device declined this upgrade")
		e.Kind, e.Accept = device.EventConfirmed, false
		d.event(e)
		return
	}
	d.progress(ctx, 0, "downloading firmware")
	if step, err := d.download(ctx, fw); err != nil {
		d.fail(ctx, e, step, err)
		return
	}
	d.progress(ctx, 35, "downloading firmware finished")
	d.mu.Lock()
	d.installing = true
	d.mu.Unlock()
	d.progress(ctx, 70, "writing firmware")
	if err := d.install(ctx); err != nil {
		d.fail(ctx, e, enosStepWriteFailed, err)
		return
	}
	d.progress(ctx, 100, "upgrading firmware finished")
	d.mu.Lock()
	d.version = fw.Version // the reboot: the new image runs
	d.mu.Unlock()
	d.inform(ctx, succeeded)
}

// confirm asks the fleet's Confirm, when it has one.
func (d *enosDevice) confirm(ctx context.Context, fw enosFirmware) bool {
	f := d.fleet.cfg.Confirm
	if f == nil {
		return true
	}
	return f(ctx, d.key, wire.Upgrade{Module: d.fleet.cfg.Module, Version: fw.Version, Size: fw.FileSize, URL: fw.FileURL})
}

// install takes InstallTime and fails as FailFirst and FailRate say.
func (d *enosDevice) install(ctx context.Context) error {
	if t := d.fleet.cfg.InstallTime; t > 0 && !sleep(ctx, t) {
		return ctx.Err()
	}
	d.fleet.stats.installs.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.installs++
	if d.installs <= d.fleet.cfg.FailFirst || d.rng.Float64() < d.fleet.cfg.FailRate {
		return errSimulatedFailure
	}
	return nil
}

// enosFailureCodes names otter's failure code for each EnOS step, for the
// device's events.
var enosFailureCodes = map[int]string{
	enosStepUpgradeFailed:  wire.FailInstall,
	enosStepDownloadFailed: wire.FailDownload,
	enosStepVerifyFailed:   wire.FailVerify,
	enosStepWriteFailed:    wire.FailInstall,
}

// fail reports a failure step with its reason.
func (d *enosDevice) fail(ctx context.Context, e device.Event, step int, err error) {
	if ctx.Err() != nil {
		return // stopping: the server's timeout or the next run decides
	}
	d.progress(ctx, step, wire.Clip(err.Error(), wire.MaxTextLength))
	e.Kind, e.Code, e.Err = device.EventFailed, enosFailureCodes[step], err
	d.event(e)
}

// download fetches fw's file and checks it; on failure it returns the step
// to report.
func (d *enosDevice) download(ctx context.Context, fw enosFirmware) (int, error) {
	h, err := newSignHash(fw.SignMethod)
	if err != nil {
		return enosStepVerifyFailed, err
	}
	u, err := d.fileURL(fw.FileURL)
	if err != nil {
		return enosStepDownloadFailed, err
	}
	n, err := fetch(ctx, d.hc, u, fw.FileSize, h, d.backoff)
	if err != nil {
		if errors.Is(err, errTooLong) {
			return enosStepVerifyFailed, err
		}
		return enosStepDownloadFailed, err
	}
	if fw.FileSize > 0 && n != fw.FileSize {
		return enosStepVerifyFailed, fmt.Errorf("the file has %d bytes; the command says %d", n, fw.FileSize)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(sum, fw.Sign) {
		return enosStepVerifyFailed, fmt.Errorf("the %s of the file is %s; the command says %s", fw.SignMethod, sum, fw.Sign)
	}
	return 0, nil
}

// fileURL makes fileUrl absolute: EnOS's older commands give a path on
// the server.
func (d *enosDevice) fileURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("fileUrl %q: %w", s, err)
	}
	if u.Scheme == "http" || u.Scheme == "https" {
		return s, nil
	}
	if u.Scheme != "" || !strings.HasPrefix(u.Path, "/") {
		return "", fmt.Errorf("fileUrl %q: only http(s) URLs and paths on the server are supported", s)
	}
	base, err := url.Parse(d.fleet.cfg.API.BaseURL())
	if err != nil {
		return "", err
	}
	return base.ResolveReference(u).String(), nil
}
