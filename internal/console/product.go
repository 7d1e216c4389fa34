package console

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/sdk/wire"
)

// productsPage is the data of the product list.
type productsPage struct {
	base
	Products []productRow
	Pager    pager
	Form     *form
}

type productRow struct {
	ota.Product
	Stats store.ProductStats
}

func (c *Console) products(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.showProducts(w, r, s, http.StatusOK, newForm(nil))
}

func (c *Console) showProducts(w http.ResponseWriter, r *http.Request, s *session, status int, f *form) error {
	ctx := r.Context()
	items, next, err := c.store.ListProducts(ctx, pageOf(r, pageSize))
	if err != nil {
		return err
	}
	stats, err := c.stats.get(ctx)
	if err != nil {
		return err
	}
	rows := make([]productRow, len(items))
	for i, p := range items {
		rows[i] = productRow{Product: p, Stats: stats.product(p.Key)}
	}
	data := &productsPage{base: c.base(s, "Products", "products"), Products: rows, Pager: newPager(r, next), Form: f}
	data.Flash = doneMessage(r)
	c.render(w, r, status, "products", data)
	return nil
}

// productFields are the fields of the new product form.
var productFields = []string{"key", "name", "description", "protocol"}

func (c *Console) createProduct(w http.ResponseWriter, r *http.Request, s *session) error {
	f := newForm(r.PostForm)
	p, err := c.client(s).CreateProduct(r.Context(), client.ProductCreate{
		Key: f.Get("key"), Name: f.Get("name"), Description: f.Get("description"), Protocol: f.Get("protocol"),
	})
	if refused(err) {
		return err
	}
	if err != nil {
		f.FailAt(err, productFields)
		return c.showProducts(w, r, s, statusOf(err), f)
	}
	c.stats.invalidate()
	http.Redirect(w, r, "/products/"+url.PathEscape(p.Key)+"?done=product-created", http.StatusSeeOther)
	return nil
}

func (c *Console) deleteProduct(w http.ResponseWriter, r *http.Request, s *session) error {
	key := r.PathValue("product")
	if err := c.client(s).DeleteProduct(r.Context(), key); refused(err) {
		return err
	} else if err != nil {
		f := newForm(nil)
		f.Errors["delete"] = messageOf(err)
		return c.showProduct(w, r, s, statusOf(err), &productForms{Delete: f})
	}
	c.stats.invalidate()
	http.Redirect(w, r, "/products?done=product-deleted", http.StatusSeeOther)
	return nil
}

// productPage is the data of a product: its fleet, a filtered page of its
// devices, and the forms that add devices.
type productPage struct {
	base
	Product ota.Product
	Stats   store.ProductStats
	Charts  []barChart
	Filter  *form
	Devices []ota.Device
	Pager   pager
	Forms   *productForms
}

// productForms are the product page's forms, each with its own errors.
type productForms struct {
	Create, Import, Delete *form
}

func (c *Console) product(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.showProduct(w, r, s, http.StatusOK, &productForms{})
}

func (c *Console) showProduct(w http.ResponseWriter, r *http.Request, s *session, status int, forms *productForms) error {
	ctx := r.Context()
	p, err := c.store.GetProduct(ctx, r.PathValue("product"))
	if err != nil {
		return err
	}
	fl, err := c.stats.get(ctx)
	if err != nil {
		return err
	}
	data := &productPage{
		base: c.base(s, p.Key+" · Products", "products"), Product: p,
		Stats: fl.product(p.Key), Charts: versionCharts(fl.versionsOf(p.Key)), Forms: forms.orEmpty(),
	}
	data.Flash = doneMessage(r)
	if err := c.listDevices(r, p.Key, data); err != nil {
		return err
	}
	c.render(w, r, status, "product", data)
	return nil
}

func (f *productForms) orEmpty() *productForms {
	for _, p := range []**form{&f.Create, &f.Import, &f.Delete} {
		if *p == nil {
			*p = newForm(nil)
		}
	}
	return f
}

// listDevices reads the device filter from the query and lists one page;
// a bad filter is shown next to its field with no devices listed.
func (c *Console) listDevices(r *http.Request, product string, data *productPage) error {
	data.Filter = newForm(r.URL.Query())
	filter, ok := deviceFilter(data.Filter)
	if !ok {
		return nil
	}
	filter.Product = product
	devs, next, err := c.store.ListDevices(r.Context(), filter, pageOf(r, pageSize))
	if ota.ErrorCode(err) == ota.EINVALID {
		data.Filter.Fail("", err) // a damaged cursor
		return nil
	}
	if err != nil {
		return err
	}
	data.Devices, data.Pager = devs, newPager(r, next)
	return nil
}

// deviceFilter reads the search form: key prefix, tags, module, version
// and online state.
func deviceFilter(f *form) (store.DeviceFilter, bool) {
	filter := store.DeviceFilter{KeyPrefix: f.Get("prefix"), Module: f.Get("module"), Version: f.Get("version")}
	tags, err := parseTags(f.Get("tag"))
	if err != nil {
		f.Fail("tag", err)
	}
	filter.Tags = tags
	if filter.Version != "" && filter.Module == "" {
		filter.Module = ota.DefaultModule
	}
	switch f.Get("online") {
	case "":
	case "true", "false":
		online := f.Get("online") == "true"
		filter.Online = &online
	default:
		f.Errors["online"] = "Choose online, offline or any."
	}
	return filter, f.OK()
}

// parseTags reads tags written as name=value, separated by commas, spaces
// or lines.
func parseTags(s string) (map[string]string, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' || r == ' ' || r == '\t' })
	if len(fields) == 0 {
		return nil, nil
	}
	tags := make(map[string]string, len(fields))
	for _, field := range fields {
		name, value, ok := strings.Cut(field, "=")
		switch {
		case !ok || name == "":
			return nil, ota.Errorf(ota.EINVALID, "Tag %q is not name=value, e.g. site=paris", wire.Clip(field, maxQuoted))
		case tags[name] != "" && tags[name] != value:
			return nil, ota.Errorf(ota.EINVALID, "Tag %s is given twice with different values", wire.Clip(name, maxQuoted))
		}
		tags[name] = value
	}
	return tags, nil
}

// doneMessages are the notices shown after an action redirects: fixed
// texts chosen by a key in the query, never text taken from the URL.
var doneMessages = map[string]string{
	"product-created":  "Product created. Add devices below, or upload a firmware for it.",
	"product-deleted":  "Product deleted.",
	"device-deleted":   "Device deleted.",
	"tags-saved":       "Tags saved.",
	"firmware-deleted": "Firmware deleted.",
}

func doneMessage(r *http.Request) string { return doneMessages[r.URL.Query().Get("done")] }
