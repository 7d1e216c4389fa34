package api

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/sdk/wire"
)

// TokenWithSecret is a new token together with its secret, answered only
// when it is made: the server keeps a hash and cannot show it again.
type TokenWithSecret struct {
	ota.Token
	Secret string `json:"token" doc:"The token to send as Authorization: Bearer <token>. Shown only once."`
}

type createTokenInput struct {
	Body struct {
		Name string   `json:"name" doc:"Who or what uses the token; events record it as the actor. Unique, ignoring case, revoked tokens included." example:"ci"`
		Role ota.Role `json:"role" enum:"viewer,operator,admin"`
	}
}

type tokenPath struct {
	ID int64 `path:"id" doc:"Token id."`
}

type listTokensInput struct {
	PageQuery
}

func (a *API) tokenRoutes() {
	register(a, ota.RoleAdmin, huma.Operation{
		OperationID: "create-token", Method: http.MethodPost, Path: Prefix + "/tokens",
		Summary: "Create an API token", Description: "Answers the token's secret, shown only here.",
		Tags: []string{"tokens"}, DefaultStatus: http.StatusCreated,
	}, a.createToken)
	register(a, ota.RoleAdmin, huma.Operation{
		OperationID: "list-tokens", Method: http.MethodGet, Path: Prefix + "/tokens",
		Summary: "List API tokens", Tags: []string{"tokens"},
	}, a.listTokens)
	register(a, ota.RoleAdmin, huma.Operation{
		OperationID: "revoke-token", Method: http.MethodDelete, Path: Prefix + "/tokens/{id}",
		Summary: "Revoke an API token", Description: "The token stops working at once.",
		Tags: []string{"tokens"}, DefaultStatus: http.StatusNoContent,
	}, a.revokeToken)
}

func (a *API) createToken(ctx context.Context, in *createTokenInput) (*bodyOutput[TokenWithSecret], error) {
	t, err := CreateToken(ctx, a.store, in.Body.Name, in.Body.Role)
	if err != nil {
		return nil, err
	}
	return bodyOf(t), nil
}

// CreateToken checks a new token's name and role and stores it with a new
// secret. The API serves it, and `otter token create --data` calls it on
// the database directly to give an operator who lost every admin token a
// new one.
func CreateToken(ctx context.Context, st store.Store, name string, role ota.Role) (TokenWithSecret, error) {
	if err := wire.CheckKey("token name", name); err != nil {
		return TokenWithSecret{}, invalidInput(err)
	}
	if !role.Valid() {
		return TokenWithSecret{}, ota.Errorf(ota.EINVALID, "role %s is not valid: use viewer, operator or admin", quote(string(role)))
	}
	secret, err := credential.NewToken()
	if err != nil {
		return TokenWithSecret{}, err
	}
	t := ota.Token{Name: name, Role: role}
	if err := st.CreateToken(ctx, &t, credential.Hash(secret)); err != nil {
		return TokenWithSecret{}, err
	}
	return TokenWithSecret{Token: t, Secret: secret}, nil
}

func (a *API) listTokens(ctx context.Context, in *listTokensInput) (*pageOutput[ota.Token], error) {
	items, next, err := a.store.ListTokens(ctx, in.page())
	if err != nil {
		return nil, err
	}
	return pageOf(items, next), nil
}

func (a *API) revokeToken(ctx context.Context, in *tokenPath) (*struct{}, error) {
	return nil, a.store.RevokeToken(ctx, in.ID)
}
