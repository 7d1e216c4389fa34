package api

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/otter-ota/otter/internal/ota"
)

type createProductInput struct {
	Body struct {
		Key         string `json:"key" doc:"Short key: ^[a-z0-9][a-z0-9._-]{0,63}$" example:"thermostat-v2"`
		Name        string `json:"name,omitempty" doc:"Display name."`
		Description string `json:"description,omitempty"`
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
	p := ota.Product{Key: b.Key, Name: b.Name, Description: b.Description}
	if err := a.store.CreateProduct(ctx, &p); err != nil {
		return nil, onField("key", err) // a product of that key exists
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
