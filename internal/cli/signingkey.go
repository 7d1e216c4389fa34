package cli

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

func (a *app) signingKeyCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "signing-key",
		Short: "Print the public key that firmware signatures verify with",
		Long: `Print the server's ed25519 public key, which devices need to verify the
signature of every firmware (docs/protocol.md, section 7). The default output
is PEM (a SubjectPublicKeyInfo, as OpenSSL reads it); -o json prints the raw
32-byte key in standard base64.`,
		Example: `  otter signing-key > otter-pub.pem
  otter signing-key -o json | jq -r .public_key`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := a.client().SigningKey(cmd.Context())
			if err != nil {
				return err
			}
			return a.render(key, func(w io.Writer) error {
				der, err := x509.MarshalPKIXPublicKey(key.PublicKey)
				if err != nil {
					return fmt.Errorf("encode the public key: %w", err)
				}
				return pem.Encode(w, &pem.Block{Type: "PUBLIC KEY", Bytes: der})
			})
		},
	}
}
