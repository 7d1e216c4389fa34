package device

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/otter-ota/otter/sdk/wire"
)

// Installer is the device's side of an upgrade: what runs now, and how a
// new image reaches flash. An A/B device writes to the slot it is not
// running, flips its boot flag in Activate and reboots; a simulated device
// keeps slots in memory. The client calls the methods of one upgrade in
// order (Write, Activate, Reboot), never two upgrades at once.
type Installer interface {
	// Versions returns the version of every module the device runs now,
	// e.g. {"default": "1.0.0"}. The client reports it at every connect.
	Versions(ctx context.Context) (map[string]string, error)
	// Write stores the verified image of up.Module in the inactive slot.
	// image yields exactly up.Size bytes whose SHA-256 and signature have
	// been checked.
	Write(ctx context.Context, up wire.Upgrade, image io.Reader) error
	// Activate makes the image Write stored the one the device boots next.
	Activate(ctx context.Context, up wire.Upgrade) error
	// Reboot starts the activated image. A real device restarts and never
	// returns: the client, started again with the same state file, then
	// reports the new versions. An implementation that switches without
	// restarting the program (a simulator, a modem module) returns nil once
	// Versions reports the new version, and the client reports at once.
	Reboot(ctx context.Context, up wire.Upgrade) error
}

// ConfirmFunc decides whether to take an upgrade that asks for
// confirmation (push with confirm:true) or is offered in request mode. It
// may block, e.g. to ask a user; ctx ends when the server cancels the
// upgrade or the client stops.
type ConfirmFunc func(ctx context.Context, up wire.Upgrade) bool

// InstallConfirmFunc decides, after the download is complete and verified
// and before the image is written and activated, whether to install it
// (a task with confirm install or both). It may block, e.g. until a user
// agrees or the device is idle; ctx ends when the server cancels the
// upgrade or the client stops. Declining returns false and a reason for
// the operator; the job ends rejected and the downloaded file is deleted.
type InstallConfirmFunc func(ctx context.Context, up wire.Upgrade) (accept bool, reason string)

// Config configures a Client. Product, Device, Secret, PublicKey,
// Installer and one of Broker and HTTPBase are required.
type Config struct {
	// Broker is the MQTT broker: "tcp://host:1883" or "tls://host:8883".
	// Empty selects HTTP-only mode, which polls HTTPBase instead.
	Broker string
	// HTTPBase is the server's base URL for the HTTP device API, e.g.
	// "https://otter.example.com"; needed only without Broker.
	HTTPBase string
	// Product and Device are the device's keys; Secret is its secret.
	Product, Device, Secret string
	// PublicKey is the server's ed25519 key that signs firmware manifests;
	// ParsePublicKey reads the usual text forms.
	PublicKey ed25519.PublicKey
	// Manifests, when set, remembers the firmware manifests found
	// correctly signed, for clients of one process that share it (see
	// ManifestMemo); nil checks every manifest's signature.
	Manifests *ManifestMemo
	// Installer writes, activates and boots images.
	Installer Installer
	// Confirm is asked before the download of an upgrade that needs a
	// confirmation; nil accepts every upgrade.
	Confirm ConfirmFunc
	// ConfirmInstall is asked between verification and installation when
	// the upgrade says confirm_install; nil accepts.
	ConfirmInstall InstallConfirmFunc
	// StateFile is where the client remembers an upgrade in progress
	// across a restart; the partial download lives beside it with the
	// suffix ".part". Empty keeps the state in memory and downloads to the
	// system's temporary folder, which suits simulated devices only.
	StateFile string
	// Logger receives the client's log; nil discards it.
	Logger *slog.Logger
	// OnEvent, when set, is called synchronously with each thing the
	// client does; it must return quickly. Simulators and tests use it.
	OnEvent func(Event)
	// HTTPClient downloads firmware and, in HTTP mode, talks to the device
	// API. Pass one shared client when running many devices in a process.
	HTTPClient *http.Client
	// TLSConfig configures "tls://" broker connections.
	TLSConfig *tls.Config
	// ClientID is the MQTT client id; empty means "otter-{product}-{device}".
	ClientID string
	// PollInterval is how often HTTP mode asks for a pending upgrade;
	// 0 means DefaultPollInterval. Each wait is jittered by ±50%.
	PollInterval time.Duration
	// RetryBase and RetryCap bound the exponential backoff of reconnects,
	// downloads and reports; 0 means 1 second and 5 minutes.
	RetryBase, RetryCap time.Duration
	// StallTimeout is the window of the download's rate check: a request
	// that brings fewer than MinDownloadRate × StallTimeout bytes in any
	// such window (nothing at all, or a trickle) is dropped and resumed;
	// 0 means 60 seconds.
	StallTimeout time.Duration
	// MinDownloadRate is the slowest rate, in bytes per second, a download
	// may keep over a StallTimeout window; 0 means DefaultMinDownloadRate.
	// A server (or a man in the middle) that trickles bytes cannot hold the
	// device in one download forever.
	MinDownloadRate int64
	// DownloadGrace sets the overall deadline of a download, retries and
	// resumes included: DownloadGrace + size / MinDownloadRate after the
	// job's first download request (kept across restarts). Past it the job
	// fails with download_failed. 0 means DefaultDownloadGrace.
	DownloadGrace time.Duration
	// ProgressEvery is the least time between two "downloading" reports
	// after the first: a higher tens bracket of the percent is reported
	// once this much time has passed since the last report. 0 means
	// DefaultProgressEvery; a negative value reports every bracket at once.
	ProgressEvery time.Duration
	// Rand returns a random number in [0, 1) for jitter; nil uses
	// math/rand/v2. Tests make it deterministic.
	Rand func() float64
	// Sleep waits between retries; nil uses a timer. Tests replace it to
	// observe the delays without waiting for them.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Defaults of Config.
const (
	// DefaultPollInterval is how often HTTP mode polls.
	DefaultPollInterval = time.Minute
	// DefaultMinDownloadRate is 1 KiB/s: far below any working link, far
	// above a trickle meant to hold the device.
	DefaultMinDownloadRate = 1024
	// DefaultDownloadGrace leaves room for backoff and outages on top of
	// the time the minimum rate needs: a 1 MiB file may take 27 minutes.
	DefaultDownloadGrace = 10 * time.Minute
	// DefaultProgressEvery spaces the "downloading" reports a second
	// apart: an operator watching a download sees its percent move as
	// before, while a download done in under a second (a small file on a
	// fast link) costs the server one report instead of up to ten.
	DefaultProgressEvery = time.Second
)

// withDefaults checks c and fills in its optional fields.
func (c Config) withDefaults() (Config, error) {
	if err := c.check(); err != nil {
		return c, fmt.Errorf("device: %w", err)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Logger = c.Logger.With("product", c.Product, "device", c.Device)
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.ClientID == "" {
		c.ClientID = "otter-" + c.Product + "-" + c.Device
	}
	// A negative duration or rate means the default, as zero does.
	c.PollInterval = cmp.Or(max(c.PollInterval, 0), DefaultPollInterval)
	c.RetryBase = cmp.Or(max(c.RetryBase, 0), time.Second)
	c.RetryCap = cmp.Or(max(c.RetryCap, 0), 5*time.Minute)
	c.StallTimeout = cmp.Or(max(c.StallTimeout, 0), time.Minute)
	c.DownloadGrace = cmp.Or(max(c.DownloadGrace, 0), DefaultDownloadGrace)
	c.MinDownloadRate = cmp.Or(max(c.MinDownloadRate, 0), DefaultMinDownloadRate)
	c.ProgressEvery = cmp.Or(c.ProgressEvery, DefaultProgressEvery)
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
	if c.Sleep == nil {
		c.Sleep = sleep
	}
	return c, nil
}

func (c Config) check() error {
	if err := wire.CheckKey("product key", c.Product); err != nil {
		return err
	}
	if err := wire.CheckKey("device key", c.Device); err != nil {
		return err
	}
	switch {
	case c.Secret == "":
		return errors.New("the device secret is empty")
	case len(c.PublicKey) != ed25519.PublicKeySize:
		return fmt.Errorf("the server public key has %d bytes; an ed25519 key has %d", len(c.PublicKey), ed25519.PublicKeySize)
	case c.Installer == nil:
		return errors.New("no Installer: the client cannot install an upgrade without one")
	case c.Broker == "" && c.HTTPBase == "":
		return errors.New("neither Broker nor HTTPBase is set: the client needs one way to reach the server")
	}
	if c.Broker != "" {
		if err := checkURL("Broker", c.Broker, "tcp", "tls", "mqtt", "mqtts", "ssl"); err != nil {
			return err
		}
	}
	if c.HTTPBase != "" {
		return checkURL("HTTPBase", c.HTTPBase, "http", "https")
	}
	return nil
}

func checkURL(field, s string, schemes ...string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%s %q: %w", field, s, err)
	}
	for _, sc := range schemes {
		if u.Scheme == sc && u.Host != "" {
			return nil
		}
	}
	return fmt.Errorf("%s %q must look like %s://host:port", field, s, strings.Join(schemes, "|"))
}

// ParsePublicKey reads the server's ed25519 public key in any of the forms
// an operator may copy: standard or URL-safe base64 of the 32 raw bytes, 64
// hex digits, or a PEM "PUBLIC KEY" block (PKIX).
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	if block, _ := pem.Decode([]byte(s)); block != nil {
		return parsePEMKey(block)
	}
	if len(s) == 2*ed25519.PublicKeySize {
		if b, err := hex.DecodeString(s); err == nil {
			return ed25519.PublicKey(b), nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == ed25519.PublicKeySize {
			return ed25519.PublicKey(b), nil
		}
	}
	return nil, errors.New("device: the public key is not 32 bytes of base64 or hex, nor a PEM PUBLIC KEY")
}

func parsePEMKey(block *pem.Block) (ed25519.PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("device: PEM public key: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("device: PEM public key is a %T, not ed25519", k)
	}
	return pub, nil
}
