package cli

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/sim"
)

func (a *app) simulateCommand() *cobra.Command {
	var (
		cfg     sim.Config
		broker  string
		secrets string
	)
	cmd := &cobra.Command{
		Use:   "simulate --product P --devices N --version V",
		Short: "Run simulated devices that upgrade over MQTT",
		Long: `Run a fleet of simulated devices, each over its own MQTT connection, until
Ctrl-C: on the device SDK, or with --protocol enos on EnOS's protocol. Devices are named sim-00001, sim-00002, ... and are
created through the API when missing. Their secrets are kept in --secrets so
that a later run reuses them: by default in your state folder, one file per
server and product ($XDG_STATE_HOME/otter/sim/, else otter/sim/ in your
configuration folder, e.g. ~/.config), never in the current folder. A
device that exists keeps the version the server knows it runs; a new one
starts on --version.

With --protocol enos the devices speak EnOS's device protocol instead of
otter's (docs/protocol-enos.md), as devices built on EnOS's device SDKs do:
EnOS's securemode=2 login with the device secret, a version report on
/sys/{product}/{device}/ota/device/inform after every connect, upgrade
commands on .../ota/device/upgrade, progress steps, and with
--request-every EnOS's getversion request; a failed install (--fail-rate)
is reported as step -4. The product must accept EnOS devices: one the
simulator creates does; an existing one is switched with otter product
update P --protocol enos, and its devices created before the switch need
new secrets (simulate them under a new --prefix).

The broker address is asked of the server; --mqtt overrides it.`,
		Example: `  otter simulate --product demo --devices 100 --version 1.0.0
  otter simulate --product demo --devices 1000 --version 1.0.0 --fail-rate 0.02 --install-time 5s
  otter simulate --product demo --devices 50 --version 1.0.0 --request-every 30s   # request mode
  otter simulate --product legacy --devices 100 --version 1.0.0 --protocol enos    # EnOS devices`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlags(field{"--product", cfg.Product}, field{"--version", cfg.Version}); err != nil {
				return err
			}
			if cfg.Devices <= 0 {
				return usageErrorf("--devices must be at least 1")
			}
			if cfg.Protocol != sim.ProtocolOtter && cfg.Protocol != sim.ProtocolEnOS {
				return usageErrorf("--protocol %s: choose %s or %s", cfg.Protocol, sim.ProtocolOtter, sim.ProtocolEnOS)
			}
			if secrets == "" {
				var err error
				if secrets, err = a.defaultSecrets(cfg.Product); err != nil {
					return err
				}
			}
			cfg.Secrets = sim.FileSecrets(secrets)
			return a.simulate(cmd, cfg, broker)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.Product, "product", "", "product `P` of the devices (created if missing)")
	fl.IntVar(&cfg.Devices, "devices", 10, "number of devices `N`")
	fl.StringVar(&cfg.Version, "version", "", "version `V` new devices start on")
	fl.StringVar(&cfg.Module, "module", "default", "module `M` the devices report")
	fl.Float64Var(&cfg.FailRate, "fail-rate", 0, "chance `F` (0-1) that an install attempt fails")
	fl.DurationVar(&cfg.InstallTime, "install-time", 0, "time `D` an install takes")
	fl.DurationVar(&cfg.RequestEvery, "request-every", 0, "ask for an upgrade every `D` (request mode)")
	fl.Float64Var(&cfg.OfflineRate, "offline-rate", 0, "share `F` (0-1) of devices that start offline")
	fl.DurationVar(&cfg.OfflineFor, "offline-for", 30*time.Second, "how long offline devices stay away")
	fl.StringVar(&cfg.Prefix, "prefix", "sim-", "device key prefix")
	fl.StringVar(&cfg.Protocol, "protocol", sim.ProtocolOtter, "device protocol `P`: otter, or enos (EnOS's device protocol)")
	fl.StringVar(&broker, "mqtt", "", "MQTT broker URL, e.g. tcp://127.0.0.1:1883 (default: asked of the server)")
	fl.StringVar(&secrets, "secrets", "", "file that keeps device secrets between runs (default: in your state folder, see above)")
	return cmd
}

// defaultSecrets is the simulator's secrets file for product on the
// server: in the user's state folder, so that device secrets never land in
// a repository, and per server, since two servers' devices differ.
func (a *app) defaultSecrets(product string) (string, error) {
	dir := a.env.Getenv("XDG_STATE_HOME")
	if dir == "" {
		var err error
		if dir, err = os.UserConfigDir(); err != nil {
			return "", fmt.Errorf("no folder for the device secrets (give --secrets): %w", err)
		}
	}
	server := a.serverURL()
	if u, err := url.Parse(server); err == nil && u.Host != "" {
		server = u.Host
	}
	server = strings.NewReplacer(":", "_", "/", "_", "\\", "_").Replace(server)
	return filepath.Join(dir, "otter", "sim", server, product+".secrets.csv"), nil
}

func (a *app) simulate(cmd *cobra.Command, cfg sim.Config, broker string) error {
	ctx := cmd.Context()
	api := a.client()
	key, err := api.SigningKey(ctx)
	if err != nil {
		return fmt.Errorf("read the server's signing key: %w", err)
	}
	cfg.PublicKey = key.PublicKey
	if cfg.Broker, err = a.brokerURL(ctx, broker); err != nil {
		return err
	}
	cfg.API = api
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "starting %s of %s speaking %s's protocol on %s (device secrets in %s)\n",
		ota.Plural(cfg.Devices, "device", "devices"), cfg.Product, protocolName(cfg.Protocol), cfg.Broker, cfg.Secrets)
	fleet, err := sim.Start(ctx, cfg)
	if err != nil {
		return err
	}
	summarize(ctx, out, fleet, isTerminal(out))
	fleet.Wait()
	fmt.Fprintln(out)
	return fleet.Err()
}

// protocolName is how a device protocol is named to people.
func protocolName(p string) string {
	if p == sim.ProtocolEnOS {
		return "EnOS"
	}
	return p
}

// brokerURL is the --mqtt flag, or the broker the server says it runs, with
// a wildcard host replaced by the server's host.
func (a *app) brokerURL(ctx context.Context, flag string) (string, error) {
	if flag != "" {
		if !strings.Contains(flag, "://") {
			flag = "tcp://" + flag
		}
		return flag, nil
	}
	info, err := a.client().ServerInfo(ctx)
	if err != nil {
		return "", fmt.Errorf("ask the server for its MQTT address (or give --mqtt): %w", err)
	}
	if info.MQTT == "" {
		return "", fmt.Errorf("the server runs no MQTT broker: give --mqtt")
	}
	u, err := url.Parse(info.MQTT)
	if err != nil {
		return "", fmt.Errorf("the server's MQTT address %q: %w", info.MQTT, err)
	}
	if host, port, err := net.SplitHostPort(u.Host); err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
		server, _ := url.Parse(a.serverURL())
		u.Host = net.JoinHostPort(server.Hostname(), port)
	}
	return u.String(), nil
}

// summarize prints the fleet's state every second until ctx ends: one
// redrawn line on a terminal, a line every ten seconds otherwise.
func summarize(ctx context.Context, w io.Writer, fleet *sim.Fleet, tty bool) {
	every := time.Second
	if !tty {
		every = 10 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		line := summaryLine(fleet.Stats())
		if tty {
			fmt.Fprintf(w, "\r\033[K%s", line)
		} else {
			fmt.Fprintln(w, line)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func summaryLine(s sim.Stats) string {
	var vs []string
	for _, v := range slices.Sorted(maps.Keys(s.Versions)) {
		vs = append(vs, fmt.Sprintf("%s=%d", v, s.Versions[v]))
	}
	return fmt.Sprintf("connected %d/%d  upgrading %d  succeeded %d  failed %d  versions %s",
		s.Connected, s.Devices, s.Upgrading, s.Succeeded, s.Failed, strings.Join(vs, " "))
}
