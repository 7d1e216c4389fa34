package api

import (
	"context"
	"encoding/base64"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/otter-ota/otter/internal/ota"
)

// SigningKey is the public key that firmware manifests verify with.
type SigningKey struct {
	Algorithm string `json:"algorithm" enum:"ed25519"`
	PublicKey string `json:"public_key" doc:"The raw 32-byte ed25519 public key, standard base64."`
}

func (a *API) signingKeyRoutes() {
	register(a, ota.RoleViewer, huma.Operation{
		OperationID: "get-signing-key", Method: http.MethodGet, Path: Prefix + "/signing-key",
		Summary: "Get the firmware signing public key", Tags: []string{"firmware"},
		Description: "Devices verify each firmware's ed25519 signature over its manifest with this key.",
	}, a.getSigningKey)
}

func (a *API) getSigningKey(context.Context, *struct{}) (*bodyOutput[SigningKey], error) {
	return bodyOf(SigningKey{
		Algorithm: "ed25519",
		PublicKey: base64.StdEncoding.EncodeToString(a.signer.PublicKey()),
	}), nil
}
