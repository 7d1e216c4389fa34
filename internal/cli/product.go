package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/sdk/wire"
)

func (a *app) productCommand() *cobra.Command {
	return a.group("product", "Manage products (device models)",
		a.productCreateCommand(),
		a.productListCommand(),
		a.productGetCommand(),
		a.productUpdateCommand(),
		a.productDeleteCommand(),
	)
}

func (a *app) productCreateCommand() *cobra.Command {
	var in client.ProductCreate
	cmd := &cobra.Command{
		Use:   "create KEY",
		Short: "Create a product",
		Long: `Create a product, the device model that firmware and devices belong to.
KEY is ` + wire.KeyRule + `.`,
		Example: `  otter product create thermostat-v2 --name "Thermostat v2"
  otter product create demo -o json`,
		Args: needArgs("KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			in.Key = args[0]
			p, err := a.client().CreateProduct(cmd.Context(), in)
			if err != nil {
				return err
			}
			return a.render(p, func(w io.Writer) error { return writeProduct(w, p) })
		},
	}
	cmd.Flags().StringVar(&in.Name, "name", "", "human-readable name")
	cmd.Flags().StringVar(&in.Description, "description", "", "free-form description")
	cmd.Flags().StringVar(&in.Protocol, "protocol", "otter", "device protocol: otter, or enos (devices may also speak EnOS's device protocol, docs/protocol-enos.md)")
	return cmd
}

func (a *app) productUpdateCommand() *cobra.Command {
	var name, description, protocol string
	cmd := &cobra.Command{
		Use:   "update KEY",
		Short: "Change a product's name, description or protocol",
		Long: `Change a product's name, description or protocol; flags not given stay.

--protocol enos lets the product's devices speak EnOS's device protocol as
well as otter's (docs/protocol-enos.md). EnOS's login signs with the device
secret itself, which otter then keeps encrypted; devices created before the
switch have only a hash of theirs, so each needs a new secret
(otter device rotate-secret) before it can log in the EnOS way. Switching back
to otter deletes the encrypted secrets.`,
		Example: `  otter product update demo --protocol enos
  otter product update demo --name "Demo board"`,
		Args: needArgs("KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var u client.ProductUpdate
			flags := cmd.Flags()
			if flags.Changed("name") {
				u.Name = &name
			}
			if flags.Changed("description") {
				u.Description = &description
			}
			if flags.Changed("protocol") {
				u.Protocol = &protocol
			}
			if u == (client.ProductUpdate{}) {
				return usageErrorf("give at least one of --name, --description, --protocol")
			}
			p, err := a.client().UpdateProduct(cmd.Context(), args[0], u)
			if err != nil {
				return err
			}
			return a.render(p, func(w io.Writer) error {
				if err := writeProduct(w, p); err != nil {
					return err
				}
				if u.Protocol != nil && *u.Protocol == "enos" {
					_, err = fmt.Fprintf(w, "\ndevices created before this switch need a new secret (otter device rotate-secret %s KEY) to log in with EnOS's protocol\n", p.Key)
				}
				return err
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "human-readable name")
	cmd.Flags().StringVar(&description, "description", "", "free-form description")
	cmd.Flags().StringVar(&protocol, "protocol", "", "device protocol: otter or enos")
	return cmd
}

func (a *app) productListCommand() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List products",
		Example: "  otter product list\n  otter product list -o json",
		Args:    needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkLimit(limit); err != nil {
				return err
			}
			items, err := collect(a.client().AllProducts(cmd.Context(), pageOptions(limit)), limit)
			if err != nil {
				return err
			}
			return a.render(items, func(w io.Writer) error { return writeProducts(w, items, a.now()) })
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "print at most `N` products (default: all)")
	return cmd
}

func (a *app) productGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "get KEY",
		Short:   "Show a product",
		Example: "  otter product get demo",
		Args:    needArgs("KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := a.client().Product(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.render(p, func(w io.Writer) error { return writeProduct(w, p) })
		},
	}
}

func (a *app) productDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "delete KEY",
		Short:   "Delete a product",
		Long:    "Delete a product. The server refuses while the product still has devices or firmware.",
		Example: "  otter product delete demo",
		Args:    needArgs("KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.client().DeleteProduct(cmd.Context(), args[0]); err != nil {
				return err
			}
			out := struct {
				Product string `json:"product"`
				Deleted bool   `json:"deleted"`
			}{args[0], true}
			return a.render(out, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "deleted product %s\n", args[0])
				return err
			})
		},
	}
}

func writeProducts(w io.Writer, ps []client.Product, now time.Time) error {
	t := newTable(w, "KEY", "NAME", "PROTOCOL", "CREATED", "DESCRIPTION")
	for _, p := range ps {
		t.row(p.Key, orDash(p.Name), orDash(p.Protocol), formatAge(p.CreatedAt, now), orDash(p.Description))
	}
	return t.flush()
}

func writeProduct(w io.Writer, p *client.Product) error {
	return writeFields(w, []field{
		{"key", p.Key},
		{"name", orDash(p.Name)},
		{"description", orDash(p.Description)},
		{"protocol", orDash(p.Protocol)},
		{"created", formatTime(p.CreatedAt)},
	})
}
