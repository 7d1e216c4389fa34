package api

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

type listEventsInput struct {
	Kind     string    `query:"kind" doc:"Only events of this kind: product, device, firmware, task, job, token, session (console sign-ins and sign-outs) or setting."`
	Actor    string    `query:"actor" doc:"Only events caused by this actor (a token name, device, engine or system)."`
	Product  string    `query:"product" doc:"Only events about this product."`
	Device   string    `query:"device" doc:"Only events about this device key."`
	Task     int64     `query:"task" doc:"Only events about this task id."`
	Job      int64     `query:"job" doc:"Only events about this job id."`
	Firmware int64     `query:"firmware" doc:"Only events about this firmware id."`
	Since    time.Time `query:"since" doc:"Only events at or after this time (RFC 3339)."`
	Until    time.Time `query:"until" doc:"Only events before this time (RFC 3339)."`
	PageQuery
}

func (a *API) eventRoutes() {
	register(a, ota.RoleViewer, huma.Operation{
		OperationID: "list-events", Method: http.MethodGet, Path: Prefix + "/events",
		Summary: "List events, newest first", Tags: []string{"events"},
	}, a.listEvents)
}

func (a *API) listEvents(ctx context.Context, in *listEventsInput) (*pageOutput[ota.Event], error) {
	f := store.EventFilter{
		Kind: in.Kind, Actor: in.Actor, Product: in.Product, Device: in.Device,
		TaskID: in.Task, JobID: in.Job, Firmware: in.Firmware, Since: in.Since, Until: in.Until,
	}
	items, next, err := a.store.ListEvents(ctx, f, in.page())
	if err != nil {
		return nil, err
	}
	return pageOf(items, next), nil
}
