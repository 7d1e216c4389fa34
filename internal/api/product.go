package api

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

type createProductInput struct {
	Body struct {
		Key         string `json:"key" doc:"Short key: ^[a-z0-9][a-z0-9._-]{0,63}$" example:"thermostat-v2"`
		Name        string `json:"name,omitempty" doc:"Display name."`
		Description string `json:"description,omitempty"`
		Protocol    string `json:"protocol,omitempty" enum:"otter,enos" doc:"Device protocol: otter (default) or enos (devices may also speak EnOS's device protocol; docs/protocol-enos.md)."`
	}
}

type updateProductInput struct {
	Product string `path:"product" doc:"Product key."`
	Body    struct {
		Name        *string `json:"name,omitempty" doc:"Display name."`
		Description *string `json:"description,omitempty"`
		Protocol    *string `json:"protocol,omitempty" enum:"otter,enos" doc:"Device protocol. Switched to enos, devices created before need a new secret (rotate it) to log in with EnOS's protocol; switched to otter, the sealed secrets are deleted."`
	}
}

type productPath struct {
	Product string `path:"product" doc:"Product key."`
}

type listProductsInput struct {
	PageQuery
}

func (a *API) productRoutes() {
	register(a, ota.RoleOperator, huma.Operation{
		OperationID: "create-product", Method: http.MethodPost, Path: Prefix + "/products",
		Summary: "Create a product", Tags: []string{"products"}, DefaultStatus: http.StatusCreated,
	}, a.createProduct)
	register(a, ota.RoleViewer, huma.Operation{
		OperationID: "list-products", Method: http.MethodGet, Path: Prefix + "/products",
		Summary: "List products", Tags: []string{"products"},
	}, a.listProducts)
	register(a, ota.RoleViewer, huma.Operation{
		OperationID: "get-product", Method: http.MethodGet, Path: Prefix + "/products/{product}",
		Summary: "Get a product", Tags: []string{"products"},
	}, a.getProduct)
	register(a, ota.RoleOperator, huma.Operation{
		OperationID: "update-product", Method: http.MethodPatch, Path: Prefix + "/products/{product}",
		Summary: "Update a product", Description: "Changes the fields given: name, description, protocol.",
		Tags: []string{"products"},
	}, a.updateProduct)
	register(a, ota.RoleOperator, huma.Operation{
		OperationID: "delete-product", Method: http.MethodDelete, Path: Prefix + "/products/{product}",
		Summary: "Delete a product", Description: "Refused (409) while the product has devices or firmware.",
		Tags: []string{"products"}, DefaultStatus: http.StatusNoContent,
	}, a.deleteProduct)
}

func (a *API) createProduct(ctx context.Context, in *createProductInput) (*bodyOutput[ota.Product], error) {
	b := in.Body
	if err := checkProductKey(b.Key); err != nil {
		return nil, onField("key", err)
	}
	if err := checkText("name", b.Name, maxNameLen); err != nil {
		return nil, onField("name", err)
	}
	if err := checkText("description", b.Description, maxDescription); err != nil {
		return nil, onField("description", err)
	}
	p := ota.Product{Key: b.Key, Name: b.Name, Description: b.Description, Protocol: b.Protocol}
	if err := a.store.CreateProduct(ctx, &p); err != nil {
		return nil, onField("key", err) // a product of that key exists
	}
	return bodyOf(p), nil
}

func (a *API) updateProduct(ctx context.Context, in *updateProductInput) (*bodyOutput[ota.Product], error) {
	b := in.Body
	if b.Name != nil {
		if err := checkText("name", *b.Name, maxNameLen); err != nil {
			return nil, onField("name", err)
		}
	}
	if b.Description != nil {
		if err := checkText("description", *b.Description, maxDescription); err != nil {
			return nil, onField("description", err)
		}
	}
	p, err := a.store.UpdateProduct(ctx, in.Product, store.ProductUpdate{Name: b.Name, Description: b.Description, Protocol: b.Protocol})
	if err != nil {
		return nil, onField("protocol", err)
	}
	return bodyOf(p), nil
}

func (a *API) listProducts(ctx context.Context, in *listProductsInput) (*pageOutput[ota.Product], error) {
	items, next, err := a.store.ListProducts(ctx, in.page())
	if err != nil {
		return nil, err
	}
	return pageOf(items, next), nil
}

func (a *API) getProduct(ctx context.Context, in *productPath) (*bodyOutput[ota.Product], error) {
	p, err := a.store.GetProduct(ctx, in.Product)
	if err != nil {
		return nil, err
	}
	return bodyOf(p), nil
}

func (a *API) deleteProduct(ctx context.Context, in *productPath) (*struct{}, error) {
	return nil, a.store.DeleteProduct(ctx, in.Product)
}
