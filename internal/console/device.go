package console

import (
	"bufio"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/deadline"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

// deviceFields are the fields of the new device form.
var deviceFields = []string{"key", "tags"}

// secretPage shows device secrets once: the server keeps only hashes.
type secretPage struct {
	base
	Product string
	Devices []client.ImportedDevice
	// Shown is the first devices, listed as a table.
	Shown []client.ImportedDevice
	// Lines is the devices as "key,secret" lines, ready to copy.
	Lines string
	Why   string
}

func (c *Console) createDevice(w http.ResponseWriter, r *http.Request, s *session) error {
	product := r.PathValue("product")
	f := newForm(r.PostForm)
	tags, err := parseTags(f.Raw("tags"))
	if err != nil {
		f.Fail("tags", err)
		return c.showProduct(w, r, s, http.StatusBadRequest, &productForms{Create: f})
	}
	d, err := c.client(s).CreateDevice(r.Context(), product, client.DeviceCreate{Key: f.Get("key"), Tags: tags})
	if refused(err) {
		return err
	}
	if err != nil {
		f.FailAt(err, deviceFields)
		return c.showProduct(w, r, s, statusOf(err), &productForms{Create: f})
	}
	c.stats.invalidate()
	c.showSecrets(w, r, s, product, "created", []client.ImportedDevice{{Key: d.Key, Secret: d.Secret}})
	return nil
}

func (c *Console) showSecrets(w http.ResponseWriter, r *http.Request, s *session, product, why string, devs []client.ImportedDevice) {
	data := &secretPage{base: c.base(s, "Device secrets · "+product, "products"), Product: product, Devices: devs, Why: why,
		Shown: devs[:min(len(devs), maxShownSecrets)]}
	var b strings.Builder
	for _, d := range devs {
		b.WriteString(d.Key + "," + d.Secret + "\n")
	}
	data.Lines = b.String()
	c.render(w, r, http.StatusOK, "secret", data)
}

// maxShownSecrets is how many imported devices the result page lists as
// a table; all of them are always in the copyable text.
const maxShownSecrets = 100

// importDevices streams an uploaded CSV file to the API's import: the
// multipart body is read part by part, so the file is never held whole.
func (c *Console) importDevices(w http.ResponseWriter, r *http.Request, s *session) error {
	// The API is called in-process, so the file's deadlines are set here.
	w = deadline.Transfer(w, r)
	product := r.PathValue("product")
	f := newForm(nil)
	res, asFile, err := c.readImport(r, s, product)
	if refused(err) {
		return err
	}
	if err != nil {
		f.Fail("file", err)
		return c.showProduct(w, r, s, statusOf(err), &productForms{Import: f})
	}
	c.stats.invalidate()
	if asFile {
		writeSecretsCSV(w, product, res.Devices)
		return nil
	}
	c.showSecrets(w, r, s, product, "imported", res.Devices)
	return nil
}

// readImport reads the import form: format, then file, in that order (the
// order of the form's fields, which browsers keep).
func (c *Console) readImport(r *http.Request, s *session, product string) (*client.ImportResult, bool, error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, false, ota.Errorf(ota.EINVALID, "the import form could not be read: %v", err)
	}
	asFile := false
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return nil, false, ota.Errorf(ota.EINVALID, "Choose a CSV file to import.")
		}
		if err != nil {
			return nil, false, ota.Errorf(ota.EINVALID, "the import form could not be read: %v", err)
		}
		switch part.FormName() {
		case "format":
			asFile = smallValue(part) == "csv"
		case "file":
			res, err := c.client(s).ImportDevices(r.Context(), product, part)
			return res, asFile, err
		}
	}
}

// smallValue reads a short form field.
func smallValue(p *multipart.Part) string {
	b, _ := io.ReadAll(io.LimitReader(p, 256))
	return string(b)
}

// writeSecretsCSV answers the imported devices as a CSV download.
func writeSecretsCSV(w http.ResponseWriter, product string, devs []client.ImportedDevice) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", product+"-device-secrets.csv"))
	w.Header().Set("Cache-Control", "no-store")
	bw := bufio.NewWriter(w)
	bw.WriteString("key,secret\n")
	for _, d := range devs {
		bw.WriteString(d.Key + "," + d.Secret + "\n")
	}
	bw.Flush()
}

// devicePage is the data of one device's page.
type devicePage struct {
	base
	Device ota.Device
	Jobs   []ota.Job
	Pager  pager
	Events []ota.Event
	Tags   *form
	Action *form // rotate and delete
}

// deviceHistory is how many of a device's latest events its page shows.
const deviceHistory = 10

func (c *Console) device(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.showDevice(w, r, s, http.StatusOK, nil, nil)
}

func (c *Console) showDevice(w http.ResponseWriter, r *http.Request, s *session, status int, tags, action *form) error {
	ctx := r.Context()
	d, err := c.store.GetDevice(ctx, r.PathValue("product"), r.PathValue("device"))
	if err != nil {
		return err
	}
	if tags == nil {
		tags = newForm(url.Values{"tags": {tagText(d.Tags)}})
	}
	if action == nil {
		action = newForm(nil)
	}
	data := &devicePage{base: c.base(s, d.Key+" · "+d.Product, "products"), Device: d, Tags: tags, Action: action}
	data.Flash = doneMessage(r)
	jobs, next, err := c.store.ListJobs(ctx, store.JobFilter{DeviceID: d.ID}, pageOf(r, pageSize))
	if err != nil {
		return err
	}
	data.Jobs, data.Pager = jobs, newPager(r, next)
	data.Events, _, err = c.store.ListEvents(ctx, store.EventFilter{Product: d.Product, Device: d.Key}, store.Page{Limit: deviceHistory})
	if err != nil {
		return err
	}
	c.render(w, r, status, "device", data)
	return nil
}

func (c *Console) setTags(w http.ResponseWriter, r *http.Request, s *session) error {
	product, key := r.PathValue("product"), r.PathValue("device")
	f := newForm(r.PostForm)
	tags, err := parseTags(f.Raw("tags"))
	if err == nil {
		_, err = c.client(s).SetDeviceTags(r.Context(), product, key, tags)
	}
	if refused(err) {
		return err
	}
	if err != nil {
		f.Fail("tags", err)
		return c.showDevice(w, r, s, statusOf(err), f, nil)
	}
	http.Redirect(w, r, devicePath(product, key)+"?done=tags-saved", http.StatusSeeOther)
	return nil
}

func (c *Console) rotateSecret(w http.ResponseWriter, r *http.Request, s *session) error {
	product, key := r.PathValue("product"), r.PathValue("device")
	d, err := c.client(s).RotateDeviceSecret(r.Context(), product, key)
	if refused(err) {
		return err
	}
	if err != nil {
		f := newForm(nil)
		f.Fail("", err)
		return c.showDevice(w, r, s, statusOf(err), nil, f)
	}
	c.showSecrets(w, r, s, product, "rotated", []client.ImportedDevice{{Key: d.Key, Secret: d.Secret}})
	return nil
}

func (c *Console) deleteDevice(w http.ResponseWriter, r *http.Request, s *session) error {
	product, key := r.PathValue("product"), r.PathValue("device")
	if err := c.client(s).DeleteDevice(r.Context(), product, key); refused(err) {
		return err
	} else if err != nil {
		f := newForm(nil)
		f.Fail("", err)
		return c.showDevice(w, r, s, statusOf(err), nil, f)
	}
	c.stats.invalidate()
	http.Redirect(w, r, "/products/"+url.PathEscape(product)+"?done=device-deleted", http.StatusSeeOther)
	return nil
}

func devicePath(product, key string) string {
	return "/products/" + url.PathEscape(product) + "/devices/" + url.PathEscape(key)
}
