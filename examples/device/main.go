// Command device is an example device for otter: a file-based A/B device
// that upgrades itself through the Go SDK. See README.md.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/otter-ota/otter/sdk/device"
	"github.com/otter-ota/otter/sdk/wire"
)

type options struct {
	broker, httpBase, product, device, secret, pubkey, dir, version, request, confirm, confirmInstall string
	poll                                                                                              time.Duration
	exitOnReboot, verbose                                                                             bool
}

func main() {
	var o options
	flag.StringVar(&o.broker, "broker", "", "MQTT broker URL, e.g. tcp://127.0.0.1:1883 (empty: HTTP mode)")
	flag.StringVar(&o.httpBase, "http", "", "server base URL for the HTTP device API, e.g. http://127.0.0.1:8080")
	flag.StringVar(&o.product, "product", "", "product key")
	flag.StringVar(&o.device, "device", "", "device key")
	flag.StringVar(&o.secret, "secret", os.Getenv("OTTER_DEVICE_SECRET"), "device secret (default $OTTER_DEVICE_SECRET)")
	flag.StringVar(&o.pubkey, "pubkey", os.Getenv("OTTER_PUBLIC_KEY"), "server public key: base64, hex, PEM, or @file (default $OTTER_PUBLIC_KEY)")
	flag.StringVar(&o.dir, "dir", "./device-data", "folder holding the slots, the active record and the SDK state")
	flag.StringVar(&o.version, "version", "1.0.0", "version of the factory image when -dir is new")
	flag.StringVar(&o.request, "request", "", "ask for an upgrade of this module at start (request mode)")
	flag.StringVar(&o.confirm, "confirm", "yes", "answer to upgrades that need confirmation before the download: yes, no or ask (on the terminal)")
	flag.StringVar(&o.confirmInstall, "confirm-install", "yes", "answer, after the verified download and before activation, to upgrades that need it: yes, no or ask")
	flag.DurationVar(&o.poll, "poll", 0, "HTTP mode: how often to poll for an upgrade (default 1m)")
	flag.BoolVar(&o.exitOnReboot, "exit-on-reboot", false, "exit at the reboot like a real device; run again to boot the new slot")
	flag.BoolVar(&o.verbose, "v", false, "log debug details")
	flag.Parse()
	if err := run(o); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "device:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	inst := &slots{dir: o.dir, exitOnReboot: o.exitOnReboot}
	if err := inst.initialise(o.version); err != nil {
		return fmt.Errorf("prepare %s: %w", o.dir, err)
	}
	if err := inst.boot(); err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	ready := make(chan struct{}, 1) // the client has connected and informed
	cfg, err := o.config(inst, logger, ready)
	if err != nil {
		return err
	}
	c, err := device.New(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.request != "" {
		go request(ctx, c, o.request, ready, logger)
	}
	return c.Run(ctx)
}

func (o options) config(inst device.Installer, logger *slog.Logger, ready chan<- struct{}) (device.Config, error) {
	key := o.pubkey
	if path, ok := strings.CutPrefix(key, "@"); ok {
		b, err := os.ReadFile(path)
		if err != nil {
			return device.Config{}, fmt.Errorf("read -pubkey: %w", err)
		}
		key = string(b)
	}
	pub, err := device.ParsePublicKey(key)
	if err != nil {
		return device.Config{}, fmt.Errorf("-pubkey: %w", err)
	}
	confirm, err := confirmer("-confirm", o.confirm, "download")
	if err != nil {
		return device.Config{}, err
	}
	confirmInstall, err := confirmer("-confirm-install", o.confirmInstall, "activate the downloaded")
	if err != nil {
		return device.Config{}, err
	}
	return device.Config{
		Broker: o.broker, HTTPBase: o.httpBase, Product: o.product, Device: o.device, Secret: o.secret,
		PublicKey: pub, Installer: inst, Confirm: confirm, PollInterval: o.poll,
		// The hook between verification and installation: the new image is
		// activated only after this local confirmation.
		ConfirmInstall: func(ctx context.Context, up wire.Upgrade) (bool, string) {
			if confirmInstall == nil || confirmInstall(ctx, up) {
				return true, ""
			}
			return false, "declined on the device before activation"
		},
		StateFile: filepath.Join(o.dir, "otter-state.json"), Logger: logger,
		OnEvent: func(e device.Event) {
			logEvent(logger, e)
			if e.Kind == device.EventInformed {
				select {
				case ready <- struct{}{}:
				default:
				}
			}
		},
	}, nil
}

// confirmer answers a confirmation as mode says; question names the step.
func confirmer(flagName, mode, question string) (device.ConfirmFunc, error) {
	switch mode {
	case "yes":
		return nil, nil
	case "no":
		return func(context.Context, wire.Upgrade) bool { return false }, nil
	case "ask":
		in := bufio.NewReader(os.Stdin)
		return func(_ context.Context, up wire.Upgrade) bool {
			fmt.Fprintf(os.Stderr, "%s %s %s (%d bytes)? [y/N] ", question, up.Module, up.Version, up.Size)
			line, _ := in.ReadString('\n')
			return strings.HasPrefix(strings.ToLower(strings.TrimSpace(line)), "y")
		}, nil
	}
	return nil, fmt.Errorf("%s %q: want yes, no or ask", flagName, mode)
}

// request asks for an upgrade once the client has connected and informed.
func request(ctx context.Context, c *device.Client, module string, ready <-chan struct{}, logger *slog.Logger) {
	select {
	case <-ready:
	case <-ctx.Done():
		return
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	up, err := c.Request(rctx, module)
	if err != nil {
		logger.Info("no upgrade", "module", module, "answer", err)
		return
	}
	logger.Info("offered", "job", up.Job, "version", up.Version)
}

// logEvent shows what the SDK does, one line per event worth seeing.
func logEvent(logger *slog.Logger, e device.Event) {
	switch e.Kind {
	case device.EventProgress:
		attrs := []any{"job", e.Job, "state", e.State}
		if e.State == wire.StateDownloading {
			attrs = append(attrs, "percent", e.Percent)
		}
		if e.Code != "" {
			attrs = append(attrs, "code", e.Code)
		}
		logger.Info("progress", attrs...)
	case device.EventInformed:
		logger.Info("informed", "versions", e.Versions)
	case device.EventSucceeded, device.EventCancelled, device.EventUpgrade:
		logger.Info(string(e.Kind), "job", e.Job, "module", e.Module, "version", e.Version)
	case device.EventFailed:
		logger.Warn("upgrade failed", "job", e.Job, "code", e.Code, "err", e.Err)
	case device.EventConnectError:
		logger.Warn("cannot connect", "err", e.Err)
	}
}
