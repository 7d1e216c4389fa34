package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/api"
	"github.com/otter-ota/otter/internal/ota"
)

func (a *app) tokenCommand() *cobra.Command {
	return a.group("token", "Manage operator API tokens (admin)",
		a.tokenCreateCommand(),
		a.tokenListCommand(),
		a.tokenRevokeCommand(),
	)
}

func (a *app) tokenCreateCommand() *cobra.Command {
	var in client.TokenCreate
	var role, dataDir, dbURL string
	cmd := &cobra.Command{
		Use:   "create --role viewer|operator|admin --name NAME",
		Short: "Create an API token and print it",
		Long: `Create an operator API token and print it. The server keeps only a hash: the
token is shown this once. Token names are unique (case-insensitive): events
record the name as the actor. Roles: viewer reads; operator also manages
products, devices, firmware and tasks; admin also manages tokens.

With --data (or --db) the token is written to the server's database directly,
with no server and no token: the way back in when every admin token is lost.
Use it with the server stopped (SQLite) or on a server you run (PostgreSQL).`,
		Example: `  otter token create --role viewer --name dashboard
  otter token create --role operator --name ci -o json
  otter token create --data ./otter-data --role admin --name rescue   # server stopped`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkRole(role); err != nil {
				return err
			}
			in.Role = client.Role(role)
			var t *client.TokenWithSecret
			var err error
			if dataDir != "" || dbURL != "" {
				t, err = a.createTokenInDatabase(cmd.Context(), dataDir, dbURL, in)
			} else {
				t, err = a.client().CreateToken(cmd.Context(), in)
			}
			if err != nil {
				return err
			}
			return a.render(t, func(w io.Writer) error {
				if err := writeToken(w, &t.Token, t.Secret); err != nil {
					return err
				}
				fmt.Fprintln(a.env.Stderr, "Save the token now: it will not be shown again.")
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "role: viewer, operator or admin (required)")
	cmd.Flags().StringVar(&in.Name, "name", "", "unique name recorded as the actor of the token's changes")
	cmd.Flags().StringVar(&dataDir, "data", "", "write to the SQLite database in this server data folder, not through a server")
	cmd.Flags().StringVar(&dbURL, "db", "", "write to this database (postgres://...), not through a server")
	return cmd
}

// createTokenInDatabase creates a token in a server's database without the
// server: the recovery path when no admin token is left.
func (a *app) createTokenInDatabase(ctx context.Context, dataDir, dbURL string, in client.TokenCreate) (*client.TokenWithSecret, error) {
	if dataDir != "" && dbURL != "" {
		return nil, usageErrorf("give --data or --db, not both")
	}
	st, err := openDatabase(ctx, dataDir, dbURL)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	t, err := api.CreateToken(ota.WithActor(ctx, "local"), st, in.Name, ota.Role(in.Role))
	if err != nil {
		return nil, err
	}
	return &client.TokenWithSecret{Secret: t.Secret, Token: client.Token{
		ID: t.ID, Name: t.Name, Role: client.Role(t.Role), CreatedAt: t.CreatedAt,
	}}, nil
}

func checkRole(role string) error {
	switch client.Role(role) {
	case client.RoleViewer, client.RoleOperator, client.RoleAdmin:
		return nil
	case "":
		return usageErrorf("--role is required: viewer, operator or admin")
	}
	return usageErrorf("--role %q: want viewer, operator or admin", role)
}

func (a *app) tokenListCommand() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List API tokens, revoked ones included",
		Example: "  otter token list",
		Args:    needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkLimit(limit); err != nil {
				return err
			}
			items, err := collect(a.client().AllTokens(cmd.Context(), pageOptions(limit)), limit)
			if err != nil {
				return err
			}
			return a.render(items, func(w io.Writer) error { return writeTokens(w, items, a.now()) })
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "print at most `N` tokens (default: all)")
	return cmd
}

func (a *app) tokenRevokeCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke an API token",
		Long:    "Revoke an API token: requests with it are refused from now on.",
		Example: "  otter token revoke 4",
		Args:    needArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("token", args[0])
			if err != nil {
				return err
			}
			if err := a.client().RevokeToken(cmd.Context(), id); err != nil {
				return err
			}
			out := struct {
				ID      int64 `json:"id"`
				Revoked bool  `json:"revoked"`
			}{id, true}
			return a.render(out, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "revoked token %d\n", id)
				return err
			})
		},
	}
}

func writeTokens(w io.Writer, ts []client.Token, now time.Time) error {
	t := newTable(w, "ID", "NAME", "ROLE", "CREATED", "LAST USED", "REVOKED")
	for _, tok := range ts {
		revoked := "-"
		if tok.RevokedAt != nil {
			revoked = formatAge(*tok.RevokedAt, now)
		}
		t.row(fmt.Sprint(tok.ID), orDash(tok.Name), string(tok.Role), formatAge(tok.CreatedAt, now),
			formatOptAge(tok.LastUsedAt, now), revoked)
	}
	return t.flush()
}

// writeToken shows one token; secret is shown when not empty.
func writeToken(w io.Writer, t *client.Token, secret string) error {
	fields := []field{{"id", fmt.Sprint(t.ID)}, {"name", orDash(t.Name)}, {"role", string(t.Role)}}
	if secret != "" {
		fields = append(fields, field{"token", secret})
	}
	fields = append(fields, field{"created", formatTime(t.CreatedAt)}, field{"revoked", formatOptTime(t.RevokedAt)})
	return writeFields(w, fields)
}
