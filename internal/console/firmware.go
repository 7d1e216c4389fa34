package console

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/deadline"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/signing"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/sdk/wire"
)

// apiPrefix is where the REST API serves; the console forwards downloads
// there.
const apiPrefix = "/api/v1"

// maxProductChoices bounds the products offered in a form's suggestion
// list; more can still be typed.
const maxProductChoices = 200

// firmwareListPage is the data of the firmware list.
type firmwareListPage struct {
	base
	Filter   *form
	Firmware []ota.Firmware
	Pager    pager
	Products []ota.Product
}

func (c *Console) firmwareList(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	f := newForm(r.URL.Query())
	filter := store.FirmwareFilter{Product: f.Get("product"), Module: f.Get("module")}
	items, next, err := c.store.ListFirmware(ctx, filter, pageOf(r, pageSize))
	if ota.ErrorCode(err) == ota.EINVALID {
		f.Fail("", err)
	} else if err != nil {
		return err
	}
	products, _, err := c.store.ListProducts(ctx, store.Page{Limit: maxProductChoices})
	if err != nil {
		return err
	}
	data := &firmwareListPage{base: c.base(s, "Firmware", "firmware"), Filter: f, Firmware: items,
		Pager: newPager(r, next), Products: products}
	data.Flash = doneMessage(r)
	c.render(w, r, http.StatusOK, "firmware_list", data)
	return nil
}

// uploadPage is the data of the upload form.
type uploadPage struct {
	base
	Form     *form
	Products []ota.Product
}

func (c *Console) uploadForm(w http.ResponseWriter, r *http.Request, s *session) error {
	if !s.can(ota.RoleOperator) {
		return ota.Errorf(ota.EFORBIDDEN, "uploading firmware needs the operator role; you have the %s role", s.Token.Role)
	}
	products, _, err := c.store.ListProducts(r.Context(), store.Page{Limit: maxProductChoices})
	if err != nil {
		return err
	}
	f := newForm(url.Values{"product": {r.URL.Query().Get("product")}, "module": {ota.DefaultModule}})
	data := &uploadPage{base: c.base(s, "Upload firmware", "firmware"), Form: f, Products: products}
	c.render(w, r, http.StatusOK, "firmware_upload", data)
	return nil
}

// upload sends the browser's upload to the API through the client, with
// the session's token. The body is handed on as it comes, so the file
// streams from the browser into the blob store while being hashed; the
// answer, the firmware or a problem naming what is wrong, goes back to the
// page's script as JSON.
func (c *Console) upload(w http.ResponseWriter, r *http.Request, s *session) error {
	// The API is called in-process, so the file's deadlines are set here.
	w = deadline.Transfer(w, r)
	u, err := uploadOf(r)
	var fw *client.Firmware
	if err == nil {
		fw, err = c.client(s).UploadFirmware(r.Context(), u, r.Body)
	}
	if err != nil {
		status := statusOf(err)
		if status >= 500 {
			c.log.ErrorContext(r.Context(), "console: upload failed", "err", err)
		}
		writeProblem(w, status, codeOf(err), messageOf(err))
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	return json.NewEncoder(w).Encode(fw)
}

// uploadOf reads the query the page's script sends, the API's upload
// parameters, into the client's upload.
func uploadOf(r *http.Request) (client.FirmwareUpload, error) {
	q := r.URL.Query()
	u := client.FirmwareUpload{
		Product: q.Get("product"), Version: q.Get("version"), Module: q.Get("module"), From: q["from"],
		SHA256: q.Get("sha256"), Description: q.Get("description"), Size: r.ContentLength,
	}
	var err error
	if u.VerifyRequired, err = queryBool(q, "verify_required"); err != nil {
		return u, err
	}
	if u.AllowDowngrade, err = queryBool(q, "allow_downgrade"); err != nil {
		return u, err
	}
	u.Params, err = parseParams(q["param"])
	return u, err
}

func queryBool(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, ota.Errorf(ota.EINVALID, "%s=%q is not a boolean: use true or false", name, wire.Clip(v, maxQuoted))
	}
	return b, nil
}

// parseParams reads the form's "name=value" lines into the client's map;
// the API checks the names and values.
func parseParams(lines []string) (map[string]string, error) {
	params := map[string]string{}
	for _, line := range lines {
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, ota.Errorf(ota.EINVALID, "param %q has no value: write name=value", wire.Clip(line, maxQuoted))
		}
		if _, dup := params[name]; dup {
			return nil, ota.Errorf(ota.EINVALID, "param %s is given twice", wire.Clip(name, maxQuoted))
		}
		params[name] = value
	}
	return params, nil
}

// forward serves a download r with the API at path, as the session's
// operator, so that ranges and conditional requests work as the API's.
func (c *Console) forward(w http.ResponseWriter, r *http.Request, s *session, path string) {
	req := r.Clone(r.Context())
	req.URL.Path, req.URL.RawPath = path, ""
	req.RequestURI = req.URL.RequestURI()
	req.Header.Del("Cookie")
	req.Header.Set("Authorization", "Bearer "+s.token)
	c.api.ServeHTTP(w, req)
}

// firmwareFile lets the browser download a firmware file through the
// API, which serves ranges and conditional requests.
func (c *Console) firmwareFile(w http.ResponseWriter, r *http.Request, s *session) error {
	id, err := pathID(r, "id", "firmware")
	if err != nil {
		return err
	}
	c.forward(w, r, s, apiPrefix+"/firmware/"+strconv.FormatInt(id, 10)+"/file")
	return nil
}

// taskJobsCSV lets the browser download a task's jobs through the API's
// CSV export, streamed as the API writes it.
func (c *Console) taskJobsCSV(w http.ResponseWriter, r *http.Request, s *session) error {
	id, err := pathID(r, "id", "task")
	if err != nil {
		return err
	}
	c.forward(w, r, s, apiPrefix+"/tasks/"+strconv.FormatInt(id, 10)+"/jobs.csv")
	return nil
}

// firmwarePage is the data of one firmware's page.
type firmwarePage struct {
	base
	Firmware ota.Firmware
	// Signature says whether the signature verifies with the server's
	// current signing key.
	Signature string
	SigOK     bool
	Tasks     []taskRow
	Pager     pager
	Delete    *form
}

func (c *Console) firmware(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.showFirmware(w, r, s, http.StatusOK, newForm(nil))
}

func (c *Console) showFirmware(w http.ResponseWriter, r *http.Request, s *session, status int, del *form) error {
	ctx := r.Context()
	id, err := pathID(r, "id", "firmware")
	if err != nil {
		return err
	}
	fw, err := c.store.GetFirmware(ctx, id)
	if err != nil {
		return err
	}
	tasks, next, err := c.store.ListTasks(ctx, store.TaskFilter{FirmwareID: id}, pageOf(r, pageSize))
	if err != nil {
		return err
	}
	data := &firmwarePage{
		base:     c.base(s, fw.Product+" "+fw.Module+" "+fw.Version+" · Firmware", "firmware"),
		Firmware: fw, Tasks: taskRows(tasks), Pager: newPager(r, next), Delete: del,
	}
	data.SigOK, data.Signature = c.checkSignature(r, s, fw)
	c.render(w, r, status, "firmware", data)
	return nil
}

// checkSignature verifies the firmware's signature with the public key the
// API gives devices, as a device would.
func (c *Console) checkSignature(r *http.Request, s *session, fw ota.Firmware) (bool, string) {
	key, err := c.client(s).SigningKey(r.Context())
	if err != nil {
		return false, "could not be checked: " + messageOf(err)
	}
	if signing.ManifestOf(fw).Verify(key.PublicKey, fw.Signature) {
		return true, "valid: it verifies with the server's signing key " + base64.StdEncoding.EncodeToString(key.PublicKey)
	}
	return false, "does not verify with the server's current signing key: devices will refuse this firmware"
}

func (c *Console) deleteFirmware(w http.ResponseWriter, r *http.Request, s *session) error {
	id, err := pathID(r, "id", "firmware")
	if err != nil {
		return err
	}
	fw, err := c.store.GetFirmware(r.Context(), id)
	if err != nil {
		return err
	}
	if err := c.client(s).DeleteFirmware(r.Context(), id); refused(err) {
		return err
	} else if err != nil {
		f := newForm(nil)
		f.Fail("", err)
		return c.showFirmware(w, r, s, statusOf(err), f)
	}
	http.Redirect(w, r, "/firmware?product="+url.QueryEscape(fw.Product)+"&done=firmware-deleted", http.StatusSeeOther)
	return nil
}

// deprecateFirmware retires a firmware through the API and shows its page
// again, with the outcome.
func (c *Console) deprecateFirmware(w http.ResponseWriter, r *http.Request, s *session) error {
	id, err := pathID(r, "id", "firmware")
	if err != nil {
		return err
	}
	f := newForm(nil)
	if _, err := c.client(s).DeprecateFirmware(r.Context(), id); refused(err) {
		return err
	} else if err != nil {
		f.Fail("", err)
		return c.showFirmware(w, r, s, statusOf(err), f)
	}
	http.Redirect(w, r, "/firmware/"+strconv.FormatInt(id, 10), http.StatusSeeOther)
	return nil
}
