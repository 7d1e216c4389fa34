package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/otter-ota/otter/internal/blob"
	"github.com/otter-ota/otter/internal/deadline"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/signing"
	"github.com/otter-ota/otter/internal/store"
)

// uploadQuery is the parsed query of a firmware upload.
type uploadQuery struct {
	product, module, version string
	from                     []string
	sha256                   string // declared, lowercase hex; "" when not given
	verifyRequired           bool
	allowDowngrade           bool
	params                   map[string]string
	description              string
}

// uploadParams lists the query parameters an upload accepts; any other is
// refused, so that a misspelt one is not silently ignored.
var uploadParams = []string{"product", "version", "module", "from", "sha256", "verify_required", "allow_downgrade", "param", "description"}

func (a *API) uploadRoutes() {
	a.router.Post(Prefix+"/firmware", a.plain(ota.RoleOperator, a.uploadFirmware))
	a.documentUpload(Prefix + "/firmware")
}

// uploadFirmware streams the body to a temporary blob while hashing it,
// then signs the manifest, commits the file and stores the firmware. Every
// refusal before the commit aborts the blob, so nothing is kept.
func (a *API) uploadFirmware(w http.ResponseWriter, r *http.Request) error {
	q, err := parseUploadQuery(r.URL.Query())
	if err != nil {
		return err
	}
	ctx := r.Context()
	if _, err := a.store.GetProduct(ctx, q.product); err != nil {
		return err
	}
	if err := a.checkNewVersion(ctx, q); err != nil {
		return err
	}
	if r.ContentLength > a.maxFirmware {
		return a.tooLarge()
	}
	w = deadline.Transfer(w, r)
	bw, key, size, sum, err := a.receive(ctx, r.Body, q.sha256)
	if err != nil {
		return err
	}
	defer bw.Abort()
	f := q.firmware(size, sum)
	f.BlobKey = key
	f.Signature = a.signer.Sign(signing.ManifestOf(f))
	if err := a.keep(ctx, bw, &f); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, f)
	return nil
}

// receive copies body into a new blob, refusing more than the size limit
// and a SHA-256 other than the declared one. On success the caller owns the
// uncommitted writer of the returned key; on failure it has been aborted.
func (a *API) receive(ctx context.Context, body io.Reader, declared string) (bw blob.Writer, key string, n int64, sum string, err error) {
	if key, err = blobKey(); err != nil {
		return nil, "", 0, "", err
	}
	if bw, err = a.blobs.Create(ctx, key); err != nil {
		return nil, "", 0, "", err
	}
	h := sha256.New()
	n, err = io.Copy(io.MultiWriter(bw, h), io.LimitReader(body, a.maxFirmware+1))
	sum = hex.EncodeToString(h.Sum(nil))
	switch {
	case err != nil:
		err = fmt.Errorf("receive firmware: %w", err)
	case n > a.maxFirmware:
		err = a.tooLarge()
	case n == 0:
		err = ota.Errorf(ota.EINVALID, "the request body is empty: send the firmware file as the body")
	case declared != "" && declared != sum:
		err = &ota.Error{Code: ota.EMISMATCH, Message: fmt.Sprintf(
			"the file's SHA-256 is %s but sha256=%s was declared: the upload was damaged or is the wrong file; nothing was kept", sum, declared)}
	}
	if err != nil {
		bw.Abort()
		return nil, "", 0, "", err
	}
	return bw, key, n, sum, nil
}

func (a *API) tooLarge() error {
	return ota.Errorf(ota.ETOOLARGE, "the firmware file is larger than the server's limit of %d bytes (--max-firmware-size); nothing was kept", a.maxFirmware)
}

// keep commits the file before the firmware row exists, so that a crash
// leaves at worst an orphan file, never a firmware without its file; when
// the row is refused (a duplicate version), the file is removed again.
func (a *API) keep(ctx context.Context, bw blob.Writer, f *ota.Firmware) error {
	if err := bw.Commit(ctx); err != nil {
		return err
	}
	err := a.store.CreateFirmware(ctx, f)
	if err != nil {
		// The request's context may be cancelled; the cleanup must still run.
		if derr := a.blobs.Delete(context.WithoutCancel(ctx), f.BlobKey); derr != nil {
			a.log.ErrorContext(ctx, "api: firmware refused, its file was not removed", "blob", f.BlobKey, "err", derr)
		}
	}
	return err
}

// checkNewVersion refuses, before any byte of the body is read, a version
// the module has already, also when spelt differently ("v1.0.0", "1.0"),
// which the database's unique key cannot see. CreateFirmware still catches
// a duplicate uploaded at the same moment.
func (a *API) checkNewVersion(ctx context.Context, q uploadQuery) error {
	filter := store.FirmwareFilter{Product: q.product, Module: q.module}
	page := store.Page{Limit: store.MaxPageSize}
	for {
		items, next, err := a.store.ListFirmware(ctx, filter, page)
		if err != nil {
			return err
		}
		for _, f := range items {
			if ota.SameVersion(f.Version, q.version) {
				return ota.Errorf(ota.ECONFLICT, "firmware %s/%s %s exists already (id %d)%s",
					f.Product, f.Module, f.Version, f.ID, sameAs(f.Version, q.version))
			}
		}
		if next == "" {
			return nil
		}
		page.After = next
	}
}

func sameAs(existing, given string) string {
	if existing == given {
		return ""
	}
	return "; " + quote(given) + " names the same version"
}

// blobKey names a new firmware file with 128 random bits: the file is
// named before its hash is known (an S3 multipart upload names its object
// when it starts), and two uploads never share (or delete) one another's
// file. Files stored by earlier versions keep their "firmware/{sha256}-{random}"
// names: the key is read from the firmware's row, never rebuilt.
func blobKey() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("blob key: %w", err)
	}
	return "firmware/" + hex.EncodeToString(b), nil
}

func (q uploadQuery) firmware(size int64, sum string) ota.Firmware {
	return ota.Firmware{
		Product: q.product, Module: q.module, Version: q.version, Size: size, SHA256: sum,
		FromVersions: q.from, Params: q.params, Description: q.description,
		VerifyRequired: q.verifyRequired, AllowDowngrade: q.allowDowngrade,
	}
}

// parseUploadQuery reads and checks every query parameter of an upload
// before any byte of the body is read.
func parseUploadQuery(v url.Values) (uploadQuery, error) {
	for name := range v {
		if !slices.Contains(uploadParams, name) {
			return uploadQuery{}, ota.Errorf(ota.EINVALID, "unknown query parameter %s: an upload takes %s", quote(name), strings.Join(uploadParams, ", "))
		}
	}
	q := uploadQuery{product: v.Get("product"), module: v.Get("module"), version: v.Get("version"), description: v.Get("description")}
	if q.module == "" {
		q.module = ota.DefaultModule
	}
	q.from = splitList(v["from"])
	var err error
	if q.sha256, err = parseSHA256(v.Get("sha256")); err != nil {
		return q, err
	}
	if q.verifyRequired, err = parseBool("verify_required", v.Get("verify_required")); err != nil {
		return q, err
	}
	if q.allowDowngrade, err = parseBool("allow_downgrade", v.Get("allow_downgrade")); err != nil {
		return q, err
	}
	if q.params, err = paramRule.parseAll(v["param"]); err != nil {
		return q, err
	}
	return q, q.check()
}

func (q uploadQuery) check() error {
	if q.product == "" || q.version == "" {
		return ota.Errorf(ota.EINVALID, "an upload needs the query parameters product and version")
	}
	if err := checkProductKey(q.product); err != nil {
		return err
	}
	if err := checkModule(q.module); err != nil {
		return err
	}
	if err := ota.ValidateFirmwareVersion(q.version, q.from); err != nil {
		return err
	}
	if err := q.checkDowngrade(); err != nil {
		return err
	}
	return checkText("description", q.description, maxDescription)
}

// checkDowngrade refuses from-versions above the new version unless the
// operator said the downgrade is intended.
func (q uploadQuery) checkDowngrade() error {
	if q.allowDowngrade {
		return nil
	}
	for _, f := range q.from {
		if ota.IsDowngrade(f, q.version) {
			return ota.Errorf(ota.EINVALID, "from-version %s is higher than %s, so this firmware downgrades: pass allow_downgrade=true if that is intended", quote(f), quote(q.version))
		}
	}
	return nil
}

// splitList accepts repeated values and comma-separated ones alike.
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

func parseSHA256(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	s = strings.ToLower(s)
	if b, err := hex.DecodeString(s); err != nil || len(b) != sha256.Size {
		return "", ota.Errorf(ota.EINVALID, "sha256 %s is not a SHA-256: give 64 hex characters", quote(s))
	}
	return s, nil
}

func parseBool(name, s string) (bool, error) {
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, ota.Errorf(ota.EINVALID, "%s=%s is not a boolean: use true or false", name, quote(s))
	}
	return b, nil
}
