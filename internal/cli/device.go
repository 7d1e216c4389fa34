package cli

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/sdk/wire"
)

func (a *app) deviceCommand() *cobra.Command {
	return a.group("device", "Manage devices",
		a.deviceCreateCommand(),
		a.deviceImportCommand(),
		a.deviceListCommand(),
		a.deviceGetCommand(),
		a.deviceTagCommand(),
		a.deviceRotateSecretCommand(),
		a.deviceDeleteCommand(),
	)
}

// secretNote follows every secret printed in table mode, on stderr so that
// stdout stays just the data.
const secretNote = "Save the secret now: it will not be shown again."

func (a *app) deviceCreateCommand() *cobra.Command {
	var tags []string
	cmd := &cobra.Command{
		Use:   "create PRODUCT KEY",
		Short: "Create a device and print its secret",
		Long: `Create a device of PRODUCT and print its secret. The server keeps only a
hash of the secret: it is shown this once. KEY is ` + wire.KeyRule + `:
write a MAC address as aa-bb-cc-dd-ee-ff. Tag names follow the same rule;
tag values are ` + wire.TagValueRule + `.`,
		Example: `  otter device create demo d1
  otter device create demo d2 --tag site=paris --tag ring=beta
  otter device create demo d3 -o json`,
		Args: needArgs("PRODUCT", "KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			tagMap, err := parsePairs("--tag", tags)
			if err != nil {
				return err
			}
			d, err := a.client().CreateDevice(cmd.Context(), args[0], client.DeviceCreate{Key: args[1], Tags: tagMap})
			if err != nil {
				return err
			}
			return a.renderSecret(d)
		},
	}
	cmd.Flags().StringArrayVar(&tags, "tag", nil, "tag `key=value` (repeatable)")
	return cmd
}

// renderSecret prints a device with its new secret.
func (a *app) renderSecret(d *client.DeviceWithSecret) error {
	return a.render(d, func(w io.Writer) error {
		if err := writeDevice(w, &d.Device, d.Secret, a.now()); err != nil {
			return err
		}
		fmt.Fprintln(a.env.Stderr, secretNote)
		return nil
	})
}

func (a *app) deviceImportCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "import PRODUCT FILE",
		Short: "Create many devices from a CSV file",
		Long: `Create the devices listed in FILE ("-" reads standard input), one per line as
key[,tag=value...]. Blank lines and lines starting with # are ignored. Either
every device is created or, on any bad line, none; the error names the line.
Up to 100,000 lines per call.

The secrets of the new devices are printed once, as CSV (key,secret), or as
the server's JSON answer with -o json.`,
		Example: `  otter device import demo devices.csv > secrets.csv
  printf 'd1,site=paris\nd2\n' | otter device import demo -`,
		Args: needArgs("PRODUCT", "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, closeFile, err := a.openInput(args[1])
			if err != nil {
				return err
			}
			defer closeFile()
			res, err := a.client().ImportDevices(cmd.Context(), args[0], r)
			if err != nil {
				return err
			}
			return a.render(res, func(w io.Writer) error {
				if err := writeSecretsCSV(w, res.Devices); err != nil {
					return err
				}
				fmt.Fprintf(a.env.Stderr, "Created %s. %s\n", ota.Plural(res.Created, "device", "devices"), "Save the secrets now: they will not be shown again.")
				return nil
			})
		},
	}
}

// openInput opens a file named on the command line; "-" is standard input.
func (a *app) openInput(name string) (io.Reader, func(), error) {
	if name == "-" {
		return a.env.Stdin, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

func writeSecretsCSV(w io.Writer, devs []client.ImportedDevice) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"key", "secret"})
	for _, d := range devs {
		_ = cw.Write([]string{d.Key, d.Secret})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write CSV: %w", err)
	}
	return nil
}

func (a *app) deviceListCommand() *cobra.Command {
	var (
		f      client.DeviceFilter
		tags   []string
		online string
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List devices",
		Example: `  otter device list --product demo
  otter device list --product demo --tag site=paris --online true
  otter device list --module default --version 1.0.0 --limit 20 -o json`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if f.Tags, err = parsePairs("--tag", tags); err != nil {
				return err
			}
			if f.Online, err = parseOptBool("--online", online); err != nil {
				return err
			}
			if err := checkLimit(limit); err != nil {
				return err
			}
			items, err := collect(a.client().AllDevices(cmd.Context(), f, pageOptions(limit)), limit)
			if err != nil {
				return err
			}
			return a.render(items, func(w io.Writer) error { return writeDevices(w, items, a.now()) })
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.Product, "product", "", "only devices of product `P`")
	fl.StringArrayVar(&tags, "tag", nil, "only devices with tag `key=value` (repeatable; all must match)")
	fl.StringVar(&f.Module, "module", "", "with --version: the module `M` whose version to match")
	fl.StringVar(&f.Version, "version", "", "only devices reporting version `V` (of --module)")
	fl.StringVar(&online, "online", "", "only online (true) or offline (false) devices")
	fl.StringVar(&f.Prefix, "prefix", "", "only devices whose key starts with `S`")
	fl.IntVar(&limit, "limit", 0, "print at most `N` devices (default: all)")
	return cmd
}

func (a *app) deviceGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "get PRODUCT KEY",
		Short:   "Show a device",
		Example: "  otter device get demo d1",
		Args:    needArgs("PRODUCT", "KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := a.client().Device(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			return a.renderDevice(d)
		},
	}
}

func (a *app) renderDevice(d *client.Device) error {
	return a.render(d, func(w io.Writer) error { return writeDevice(w, d, "", a.now()) })
}

func (a *app) deviceTagCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "tag PRODUCT KEY EDIT...",
		Short: "Set or remove tags of a device",
		Long: `Change the tags of a device: each EDIT is key=value to set a tag or key- to
remove one. Tags not named are kept.`,
		Example: `  otter device tag demo d1 site=paris ring=beta
  otter device tag demo d1 ring-`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 3 {
				return needArgs("PRODUCT", "KEY", "EDIT...")(cmd, args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			edits, err := parseTagEdits(args[2:])
			if err != nil {
				return err
			}
			c := a.client()
			d, err := c.Device(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			d, err = c.SetDeviceTags(cmd.Context(), args[0], args[1], edits.apply(d.Tags))
			if err != nil {
				return err
			}
			return a.renderDevice(d)
		},
	}
}

func (a *app) deviceRotateSecretCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "rotate-secret PRODUCT KEY",
		Short: "Give a device a new secret",
		Long: `Give a device a new secret and print it once. The old secret stops working at
once: the HTTP device API refuses it and the device's MQTT sessions are
closed. The device must be given the new one.`,
		Example: "  otter device rotate-secret demo d1",
		Args:    needArgs("PRODUCT", "KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := a.client().RotateDeviceSecret(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			return a.renderSecret(d)
		},
	}
}

func (a *app) deviceDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "delete PRODUCT KEY",
		Short: "Delete a device",
		Long: `Delete a device. Its active jobs are cancelled (code device_deleted), so its
tasks complete without it; its secret stops working and its MQTT sessions
are closed at once. Its jobs and events stay, readable under its key.`,
		Example: "  otter device delete demo d1",
		Args:    needArgs("PRODUCT", "KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.client().DeleteDevice(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			out := struct {
				Product string `json:"product"`
				Key     string `json:"key"`
				Deleted bool   `json:"deleted"`
			}{args[0], args[1], true}
			return a.render(out, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "deleted device %s/%s\n", args[0], args[1])
				return err
			})
		},
	}
}

func writeDevices(w io.Writer, ds []client.Device, now time.Time) error {
	t := newTable(w, "PRODUCT", "KEY", "ONLINE", "LAST SEEN", "VERSIONS", "TAGS")
	for _, d := range ds {
		t.row(d.Product, d.Key, yesNo(d.Online), formatOptAge(d.LastSeen, now), formatPairs(d.Versions), formatPairs(d.Tags))
	}
	return t.flush()
}

// writeDevice shows one device; secret is shown when not empty.
func writeDevice(w io.Writer, d *client.Device, secret string, now time.Time) error {
	fields := []field{{"product", d.Product}, {"key", d.Key}}
	if secret != "" {
		fields = append(fields, field{"secret", secret})
	}
	fields = append(fields,
		field{"online", yesNo(d.Online)},
		field{"last seen", formatOptAge(d.LastSeen, now)},
		field{"versions", formatPairs(d.Versions)},
		field{"tags", formatPairs(d.Tags)},
		field{"created", formatTime(d.CreatedAt)},
	)
	return writeFields(w, fields)
}
