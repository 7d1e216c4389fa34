package api

import (
	"context"
	"mime"
	"net/http"
	"strconv"

	"github.com/danielgtaylor/huma/v2"
	"github.com/go-chi/chi/v5"

	"github.com/otter-ota/otter/internal/deadline"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

type firmwarePath struct {
	ID int64 `path:"id" doc:"Firmware id."`
}

type listFirmwareInput struct {
	Product string `query:"product" doc:"Only firmware of this product."`
	Module  string `query:"module" doc:"Only firmware of this module."`
	PageQuery
}

func (a *API) firmwareRoutes() {
	register(a, ota.RoleViewer, huma.Operation{
		OperationID: "list-firmware", Method: http.MethodGet, Path: Prefix + "/firmware",
		Summary: "List firmware", Tags: []string{"firmware"},
	}, a.listFirmware)
	register(a, ota.RoleViewer, huma.Operation{
		OperationID: "get-firmware", Method: http.MethodGet, Path: Prefix + "/firmware/{id}",
		Summary: "Get a firmware", Tags: []string{"firmware"},
		Description: "verify_required: batch tasks may use the firmware only once a verification task on it " +
			"succeeded; verified_by and verified_at name that task and when it completed (absent while unverified).",
	}, a.getFirmware)
	register(a, ota.RoleOperator, huma.Operation{
		OperationID: "delete-firmware", Method: http.MethodDelete, Path: Prefix + "/firmware/{id}",
		Summary: "Delete a firmware's file, keeping its record",
		Description: "Refused (409) while a scheduled, running or paused task uses the firmware. The file is removed; " +
			"the firmware stays listed with status deleted, so the tasks, jobs and events that used it still name its version and hash.",
		Tags: []string{"firmware"}, DefaultStatus: http.StatusNoContent,
	}, a.deleteFirmware)
	register(a, ota.RoleOperator, huma.Operation{
		OperationID: "deprecate-firmware", Method: http.MethodPost, Path: Prefix + "/firmware/{id}/deprecate",
		Summary: "Deprecate a firmware", Description: "No new task may use it; running tasks go on. Only an active firmware is deprecated.",
		Tags: []string{"firmware"},
	}, a.deprecateFirmware)
	file := Prefix + "/firmware/{id}/file"
	a.router.Get(file, a.plain(ota.RoleViewer, a.serveFirmwareFile))
	a.documentFile(file)
}

func (a *API) listFirmware(ctx context.Context, in *listFirmwareInput) (*pageOutput[ota.Firmware], error) {
	f := store.FirmwareFilter{Product: in.Product, Module: in.Module}
	items, next, err := a.store.ListFirmware(ctx, f, in.page())
	if err != nil {
		return nil, err
	}
	return pageOf(items, next), nil
}

func (a *API) getFirmware(ctx context.Context, in *firmwarePath) (*bodyOutput[ota.Firmware], error) {
	f, err := a.store.GetFirmware(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	return bodyOf(f), nil
}

// deleteFirmware deletes the row first: if the file's removal then fails,
// an orphan file is left, never a firmware whose file is gone.
func (a *API) deleteFirmware(ctx context.Context, in *firmwarePath) (*struct{}, error) {
	f, err := a.store.GetFirmware(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	if err := a.store.DeleteFirmware(ctx, in.ID); err != nil {
		return nil, err
	}
	if err := a.blobs.Delete(ctx, f.BlobKey); err != nil {
		a.log.WarnContext(ctx, "api: firmware deleted, its file was not", "firmware", f.ID, "blob", f.BlobKey, "err", err)
	}
	return nil, nil
}

func (a *API) deprecateFirmware(ctx context.Context, in *firmwarePath) (*bodyOutput[ota.Firmware], error) {
	f, err := a.store.DeprecateFirmware(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	return bodyOf(f), nil
}

// serveFirmwareFile serves the file with Range and If-Range support; the
// ETag is the file's SHA-256, which never changes for a firmware.
func (a *API) serveFirmwareFile(w http.ResponseWriter, r *http.Request) error {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil {
		return ota.Errorf(ota.EINVALID, "firmware id %s is not a number", quote(chi.URLParam(r, "id")))
	}
	f, err := a.store.GetFirmware(r.Context(), id)
	if err != nil {
		return err
	}
	if f.Status == ota.FirmwareDeleted {
		return ota.Errorf(ota.ENOTFOUND, "the file of firmware %d (%s %s) was deleted", f.ID, f.Module, f.Version)
	}
	obj, err := a.blobs.Open(r.Context(), f.BlobKey)
	if err != nil {
		return err
	}
	defer obj.Close()
	w = deadline.Transfer(w, r)
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", `"`+f.SHA256+`"`)
	h.Set("Content-Disposition", mime.FormatMediaType("attachment",
		map[string]string{"filename": f.Product + "-" + f.Module + "-" + f.Version + ".bin"}))
	http.ServeContent(w, r, "", obj.ModTime, obj.Content)
	return nil
}
