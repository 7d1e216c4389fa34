package console

import (
	"net/http"
	"strconv"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

// tasksPage is the data of the task list.
type tasksPage struct {
	base
	Filter *form
	Tasks  []taskRow
	Pager  pager
}

func (c *Console) tasks(w http.ResponseWriter, r *http.Request, s *session) error {
	f := newForm(r.URL.Query())
	filter := store.TaskFilter{Product: f.Get("product")}
	if st := ota.TaskState(f.Get("state")); st != "" {
		if !st.Valid() {
			f.Errors["state"] = "Choose a task state from the list."
		}
		filter.States = []ota.TaskState{st}
	}
	data := &tasksPage{base: c.base(s, "Tasks", "tasks"), Filter: f}
	if f.OK() {
		tasks, next, err := c.store.ListTasks(r.Context(), filter, pageOf(r, pageSize))
		if ota.ErrorCode(err) == ota.EINVALID {
			f.Fail("", err)
		} else if err != nil {
			return err
		}
		data.Tasks, data.Pager = taskRows(tasks), newPager(r, next)
	}
	c.render(w, r, http.StatusOK, "tasks", data)
	return nil
}

// newTaskPage is the data of the task form.
type newTaskPage struct {
	base
	Form     *form
	Firmware []ota.Firmware
	Fields   []string
	Codes    []string
	Preview  *previewData
}

// maxFirmwareChoices bounds the firmware the form offers at once; the
// product filter narrows them.
const maxFirmwareChoices = 200

// retryCodes are the failure codes offered for retry_on.
var retryCodes = []string{
	ota.CodeDownloadFailed, ota.CodeVerifyFailed, ota.CodeSignatureInvalid, ota.CodeInstallFailed,
	ota.CodeRolledBack, ota.CodeTimedOut,
}

func (c *Console) newTask(w http.ResponseWriter, r *http.Request, s *session) error {
	if !s.can(ota.RoleOperator) {
		return ota.Errorf(ota.EFORBIDDEN, "creating a task needs the operator role; you have the %s role", s.Token.Role)
	}
	v := newTaskDefaults()
	for _, k := range []string{"firmware", "product"} {
		if q := r.URL.Query().Get(k); q != "" {
			v.Set(k, q)
		}
	}
	return c.showTaskForm(w, r, s, http.StatusOK, newForm(v), nil)
}

func (c *Console) showTaskForm(w http.ResponseWriter, r *http.Request, s *session, status int, f *form, pv *previewData) error {
	choices, err := c.firmwareChoices(r, f)
	if err != nil {
		return err
	}
	data := &newTaskPage{base: c.base(s, "New task", "tasks"), Form: f, Firmware: choices,
		Fields: taskFields, Codes: retryCodes, Preview: pv}
	c.render(w, r, status, "task_new", data)
	return nil
}

// firmwareChoices lists the firmware the form offers: the chosen
// product's (or the newest overall), plus the chosen firmware.
func (c *Console) firmwareChoices(r *http.Request, f *form) ([]ota.Firmware, error) {
	ctx := r.Context()
	product := f.Get("product")
	id, _ := strconv.ParseInt(f.Get("firmware"), 10, 64)
	var chosen ota.Firmware
	if id > 0 {
		fw, err := c.store.GetFirmware(ctx, id)
		if err == nil {
			chosen = fw
			if product == "" {
				product = fw.Product
				f.Values.Set("product", product)
			}
		}
	}
	items, _, err := c.store.ListFirmware(ctx, store.FirmwareFilter{Product: product}, store.Page{Limit: maxFirmwareChoices})
	if err != nil {
		return nil, err
	}
	if chosen.ID != 0 && !containsFirmware(items, chosen.ID) {
		items = append(items, chosen)
	}
	return items, nil
}

func containsFirmware(items []ota.Firmware, id int64) bool {
	for _, f := range items {
		if f.ID == id {
			return true
		}
	}
	return false
}

// previewData is the dry run of the task form: how many devices it
// targets, per phase, and the first of them.
type previewData struct {
	Form    *form
	Fields  []string
	Preview client.TaskPreview
	Shown   []string
	Ready   bool
}

// maxPreviewDevices is how many targeted devices the preview names.
const maxPreviewDevices = 20

// preview resolves the form with the API's dry run; field errors go next
// to their fields.
func (c *Console) preview(r *http.Request, s *session, f *form) (*previewData, error) {
	pv := &previewData{Form: f, Fields: taskFields}
	body, ok := taskBody(f)
	if !ok {
		return pv, nil
	}
	p, err := c.client(s).PreviewTask(r.Context(), body, client.ListOptions{Limit: maxPreviewDevices})
	if refused(err) {
		return nil, err
	}
	if err != nil {
		f.FailAt(err, taskFields)
		return pv, nil
	}
	pv.Preview, pv.Ready = *p, true
	pv.Shown = p.Devices
	return pv, nil
}

// previewTask answers the form's htmx request on every change: the preview
// box, and each field's error slot out of band.
func (c *Console) previewTask(w http.ResponseWriter, r *http.Request, s *session) error {
	pv, err := c.preview(r, s, newForm(r.PostForm))
	if err != nil {
		return err
	}
	c.fragment(w, r, "task_new", "preview", pv)
	return nil
}

func (c *Console) createTask(w http.ResponseWriter, r *http.Request, s *session) error {
	f := newForm(r.PostForm)
	body, ok := taskBody(f)
	if !ok {
		return c.showTaskForm(w, r, s, http.StatusBadRequest, f, nil)
	}
	t, err := c.client(s).CreateTask(r.Context(), body)
	if refused(err) {
		return err
	}
	if err != nil {
		f.FailAt(err, taskFields)
		return c.showTaskForm(w, r, s, statusOf(err), f, nil)
	}
	http.Redirect(w, r, taskURL(t.ID), http.StatusSeeOther)
	return nil
}
