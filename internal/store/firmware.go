package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/otter-ota/otter/internal/ota"
)

// firmwareColumns are the firmware columns scanFirmware reads, in order.
const firmwareColumns = `id, product, module, version, size, sha256, signature, from_versions, params,
	description, verify_required, allow_downgrade, verified_by, verified_at, blob_key, created_at, status`

// scanFirmware reads one row of firmwareColumns.
func scanFirmware(row interface{ Scan(...any) error }) (ota.Firmware, error) {
	var f ota.Firmware
	var from, params string
	var verifiedBy sql.NullInt64
	var verifiedAt sql.NullTime
	err := row.Scan(&f.ID, &f.Product, &f.Module, &f.Version, &f.Size, &f.SHA256, &f.Signature, &from, &params,
		&f.Description, &f.VerifyRequired, &f.AllowDowngrade, &verifiedBy, &verifiedAt, &f.BlobKey, &f.CreatedAt, &f.Status)
	if err != nil {
		return ota.Firmware{}, err
	}
	if f.FromVersions, err = decodeList(from); err != nil {
		return ota.Firmware{}, err
	}
	if f.Params, err = decodeMap(params); err != nil {
		return ota.Firmware{}, err
	}
	f.VerifiedBy, f.VerifiedAt = verifiedBy.Int64, timePtr(verifiedAt)
	f.CreatedAt = f.CreatedAt.UTC()
	return f, nil
}

func firmwareNotFound(id int64) error {
	return notFound("firmware %d does not exist", id)
}

// CreateFirmware stores f and assigns f.ID and f.CreatedAt; an empty module
// becomes ota.DefaultModule.
func (s *sqlStore) CreateFirmware(ctx context.Context, f *ota.Firmware) error {
	if f.Module == "" {
		f.Module = ota.DefaultModule
	}
	if err := checkFirmware(f); err != nil {
		return err
	}
	t, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer t.Rollback()
	id, err := insertFirmware(ctx, t, f)
	if err != nil {
		return err
	}
	e := ota.Event{Kind: ota.KindFirmware, Action: "created", Product: f.Product, FirmwareID: id,
		Data: map[string]string{"module": f.Module, "version": f.Version}}
	if err := t.addEvent(ctx, e); err != nil {
		return err
	}
	if err := t.Commit(); err != nil {
		return err
	}
	f.ID, f.CreatedAt, f.Status = id, t.now, ota.FirmwareActive
	f.FromVersions, f.Params = orEmptyList(f.FromVersions), orEmpty(f.Params)
	return nil
}

func insertFirmware(ctx context.Context, t *tx, f *ota.Firmware) (int64, error) {
	var id int64
	err := t.QueryRowContext(ctx, `INSERT INTO firmware (product, module, version, size, sha256, signature,
		from_versions, params, description, verify_required, allow_downgrade, verified_by, verified_at, blob_key,
		created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id`,
		f.Product, f.Module, f.Version, f.Size, f.SHA256, f.Signature, encodeList(f.FromVersions),
		encodeMap(f.Params), f.Description, f.VerifyRequired, f.AllowDowngrade, nullID(f.VerifiedBy), nullTime(f.VerifiedAt),
		f.BlobKey, t.now).Scan(&id)
	switch {
	case isUniqueViolation(err):
		return 0, conflict("firmware %s %s %s already exists (a deleted firmware keeps its version: upload a new one)", f.Product, f.Module, f.Version)
	case isForeignKeyViolation(err):
		return 0, notFound("product %q does not exist", f.Product)
	case err != nil:
		return 0, fmt.Errorf("create firmware: %w", err)
	}
	return id, nil
}

// checkFirmware refuses firmware that lacks what devices need to take it.
func checkFirmware(f *ota.Firmware) error {
	switch {
	case f.Product == "":
		return invalid("firmware needs a product")
	case strings.TrimSpace(f.Version) == "":
		return invalid("firmware needs a version")
	case f.Size < 0:
		return invalid("firmware size %d is negative", f.Size)
	case !isSHA256Hex(f.SHA256):
		return invalid("firmware sha256 %q is not 64 lowercase hex digits", f.SHA256)
	case f.BlobKey == "":
		return invalid("firmware needs the key of its file in the blob store")
	case slices.Contains(f.FromVersions, ""):
		return invalid("firmware from_versions must not hold an empty version")
	}
	return nil
}

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// GetFirmware returns the firmware with id.
func (s *sqlStore) GetFirmware(ctx context.Context, id int64) (ota.Firmware, error) {
	return getFirmware(ctx, s.db, id)
}

func getFirmware(ctx context.Context, q querier, id int64) (ota.Firmware, error) {
	f, err := scanFirmware(q.QueryRowContext(ctx, `SELECT `+firmwareColumns+` FROM firmware WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return ota.Firmware{}, firmwareNotFound(id)
	} else if err != nil {
		return ota.Firmware{}, fmt.Errorf("get firmware: %w", err)
	}
	return f, nil
}

// ListFirmware pages through the firmware that matches f, in id order.
func (s *sqlStore) ListFirmware(ctx context.Context, f FirmwareFilter, page Page) ([]ota.Firmware, string, error) {
	limit, err := pageLimit(page)
	if err != nil {
		return nil, "", err
	}
	after, err := decodeIDCursor(page.After)
	if err != nil {
		return nil, "", err
	}
	var a args
	where := "id > " + a.add(after)
	if f.Product != "" {
		where += " AND product = " + a.add(f.Product)
	}
	if f.Module != "" {
		where += " AND module = " + a.add(f.Module)
	}
	list, err := queryFirmware(ctx, s.db,
		`SELECT `+firmwareColumns+` FROM firmware WHERE `+where+` ORDER BY id LIMIT `+a.add(limit+1), a)
	if err != nil {
		return nil, "", fmt.Errorf("list firmware: %w", err)
	}
	list, next := cutPage(list, limit, func(f ota.Firmware) string { return idKey(f.ID) })
	return list, next, nil
}

func queryFirmware(ctx context.Context, q querier, query string, a args) ([]ota.Firmware, error) {
	return queryAll(ctx, q, query, a, scanFirmware)
}

// DeleteFirmware deletes firmware that no task uses. Its file stays in the
// blob store: the caller removes it after this succeeds.
func (s *sqlStore) DeleteFirmware(ctx context.Context, id int64) error {
	t, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer t.Rollback()
	f, err := getFirmware(ctx, t, id)
	if err != nil {
		return err
	}
	if f.Status == ota.FirmwareDeleted {
		return conflict("firmware %d (%s %s %s) is deleted already", id, f.Product, f.Module, f.Version)
	}
	var unfinished int64
	q := `SELECT COUNT(*) FROM tasks WHERE firmware_id = $1 AND state IN ('scheduled', 'running', 'paused')`
	if err := t.QueryRowContext(ctx, q, id).Scan(&unfinished); err != nil {
		return fmt.Errorf("delete firmware: %w", err)
	}
	if unfinished > 0 {
		return conflict("firmware %d (%s %s %s) is used by %s that %s not finished (scheduled, running or paused): cancel or wait for %s first",
			id, f.Product, f.Module, f.Version, plural(unfinished, "task", "tasks"), isAre(unfinished), itThem(unfinished))
	}
	if err := t.removeFirmware(ctx, id); err != nil {
		return err
	}
	e := ota.Event{Kind: ota.KindFirmware, Action: "deleted", Product: f.Product, FirmwareID: id,
		Data: map[string]string{"module": f.Module, "version": f.Version, "sha256": f.SHA256}}
	if err := t.addEvent(ctx, e); err != nil {
		return err
	}
	return t.Commit()
}

// removeFirmware deletes the row of a firmware no task used; the row of
// one that tasks used stays as a tombstone: those tasks, their jobs and
// events name it by id, and readers still find its version and hash.
func (t *tx) removeFirmware(ctx context.Context, id int64) error {
	var used bool
	if err := t.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM tasks WHERE firmware_id = $1)`, id).Scan(&used); err != nil {
		return fmt.Errorf("delete firmware: %w", err)
	}
	q := `DELETE FROM firmware WHERE id = $1`
	if used {
		q = `UPDATE firmware SET status = 'deleted' WHERE id = $1`
	}
	if _, err := t.ExecContext(ctx, q, id); err != nil {
		return fmt.Errorf("delete firmware: %w", err)
	}
	return nil
}

// DeprecateFirmware retires an active firmware: no new task may use it,
// running tasks go on.
func (s *sqlStore) DeprecateFirmware(ctx context.Context, id int64) (ota.Firmware, error) {
	t, err := s.begin(ctx)
	if err != nil {
		return ota.Firmware{}, err
	}
	defer t.Rollback()
	f, err := getFirmware(ctx, t, id)
	if err != nil {
		return f, err
	}
	if f.Status != ota.FirmwareActive {
		return f, conflict("firmware %d (%s %s %s) is %s: only an active firmware is deprecated", id, f.Product, f.Module, f.Version, f.Status)
	}
	if _, err := t.ExecContext(ctx, `UPDATE firmware SET status = 'deprecated' WHERE id = $1`, id); err != nil {
		return f, fmt.Errorf("deprecate firmware: %w", err)
	}
	e := ota.Event{Kind: ota.KindFirmware, Action: "deprecated", Product: f.Product, FirmwareID: id,
		Data: map[string]string{"module": f.Module, "version": f.Version}}
	if err := t.addEvent(ctx, e); err != nil {
		return f, err
	}
	f.Status = ota.FirmwareDeprecated
	return f, t.Commit()
}

func isAre(n int64) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

func itThem(n int64) string {
	if n == 1 {
		return "it"
	}
	return "them"
}

func orEmptyList(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}
