package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/otter-ota/otter/internal/brokeradmin"
	"github.com/otter-ota/otter/internal/brokeradmin/dynsec"
	"github.com/otter-ota/otter/internal/server"
	"github.com/otter-ota/otter/internal/store"
)

func (a *app) brokerCommand() *cobra.Command {
	return a.group("broker", "Manage the device accounts of an external MQTT broker", a.brokerSyncCommand())
}

type brokerSyncFlags struct {
	data, db, broker, brokerCA string
}

// brokerSyncCommand returns `otter broker sync`: it makes the external
// broker's device accounts (Mosquitto's dynamic security plugin) match the
// registry and says what it changed.
func (a *app) brokerSyncCommand() *cobra.Command {
	var f brokerSyncFlags
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Make the broker's device accounts match the registry (--broker-admin dynsec)",
		Long: `Compare the device accounts in the external broker's dynamic security
plugin (Mosquitto 2) with the registry in the database (--db, default the
SQLite database of --data), and set the broker right:

  created   registry devices without an account get one, without a password:
            otter keeps only hashes of secrets. Rotate their secrets
            (otter device rotate-secret PRODUCT KEY) before they can log in.
  repaired  accounts whose role, rules or marker differ are set right.
  deleted   accounts otter made for devices no longer in the registry.
  role      the shared roles, when missing or changed.

Accounts otter did not make are left alone. Running it again changes
nothing. It connects as the plugin's admin, with OTTER_BROKER_USERNAME and
OTTER_BROKER_PASSWORD or the credentials in the URL.`,
		Example: `  OTTER_BROKER_USERNAME=otter OTTER_BROKER_PASSWORD=... otter broker sync --db postgres://otter@db/otter --broker mqtts://broker.example.com:8883`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.broker == "" {
				return usageErrorf("--broker: give the external broker, mqtt://host:port or mqtts://host:port")
			}
			return a.syncBroker(cmd.Context(), f, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.data, "data", a.envOr("OTTER_DATA", server.DefaultDataDir), "data folder whose SQLite database holds the registry, without --db (OTTER_DATA)")
	fl.StringVar(&f.db, "db", a.envOr("OTTER_DB", ""), "database holding the registry: empty for the data folder's SQLite (OTTER_DB)")
	fl.StringVar(&f.broker, "broker", a.envOr("OTTER_BROKER", ""), "the external broker, mqtt://host:port or mqtts://host:port (OTTER_BROKER)")
	fl.StringVar(&f.brokerCA, "broker-ca", a.envOr("OTTER_BROKER_CA", ""), "with --broker mqtts://: PEM file of the certificate authorities to trust for the broker instead of the system's (OTTER_BROKER_CA)")
	return cmd
}

func (a *app) syncBroker(ctx context.Context, f brokerSyncFlags, out io.Writer) error {
	u, user, password, err := server.ParseBrokerURL(f.broker, a.env.Getenv("OTTER_BROKER_USERNAME"), a.env.Getenv("OTTER_BROKER_PASSWORD"))
	if err != nil {
		return usageErrorf("%v", err)
	}
	st, err := openDatabase(ctx, f.data, f.db)
	if err != nil {
		return err
	}
	defer st.Close()
	want, err := registryDevices(ctx, st)
	if err != nil {
		return err
	}
	tc, err := server.BrokerTLS(u, f.brokerCA)
	if err != nil {
		return usageErrorf("%v", err)
	}
	admin, err := dynsec.Dial(ctx, dynsec.Config{URL: u, Username: user, Password: password, TLS: tc})
	if err != nil {
		return fmt.Errorf("--broker %s: %w", u.Redacted(), err)
	}
	defer admin.Close()
	rep, err := admin.Sync(ctx, want)
	printSync(out, rep, len(want))
	if err != nil {
		return fmt.Errorf("sync stopped (what it changed is listed above; run it again): %w", err)
	}
	return nil
}

// registryDevices lists every device of every product.
func registryDevices(ctx context.Context, st store.Store) ([]brokeradmin.Want, error) {
	var out []brokeradmin.Want
	page := store.Page{Limit: store.MaxPageSize}
	for {
		items, next, err := st.ListDevices(ctx, store.DeviceFilter{}, page)
		if err != nil {
			return nil, fmt.Errorf("list devices: %w", err)
		}
		for _, d := range items {
			out = append(out, brokeradmin.Want{Device: brokeradmin.Device{Product: d.Product, Key: d.Key}})
		}
		if next == "" {
			return out, nil
		}
		page.After = next
	}
}

func printSync(out io.Writer, rep brokeradmin.Report, registry int) {
	noSecret := map[brokeradmin.Device]bool{}
	for _, d := range rep.NoSecret {
		noSecret[d] = true
	}
	for _, d := range rep.Created {
		if noSecret[d] {
			fmt.Fprintf(out, "created   %s (no password yet: rotate its secret)\n", d)
		} else {
			fmt.Fprintf(out, "created   %s\n", d)
		}
	}
	for _, d := range rep.Repaired {
		fmt.Fprintf(out, "repaired  %s\n", d)
	}
	for _, d := range rep.Deleted {
		fmt.Fprintf(out, "deleted   %s\n", d)
	}
	for _, r := range rep.Roles {
		fmt.Fprintf(out, "role      %s\n", r)
	}
	fmt.Fprintf(out, "%d registry devices: %d created (%d need a new secret), %d repaired, %d deleted, %d shared roles set\n",
		registry, len(rep.Created), len(rep.NoSecret), len(rep.Repaired), len(rep.Deleted), len(rep.Roles))
	if !rep.Changed() {
		fmt.Fprintln(out, "the broker matched the registry: nothing changed")
	}
	for _, d := range rep.NoSecret {
		fmt.Fprintf(out, "  otter device rotate-secret %s %s\n", d.Product, d.Key)
	}
}
