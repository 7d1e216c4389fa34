package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/otter-ota/otter/internal/brokeradmin"
	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/deadline"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

// Import limits: a file of 100,000 devices with a few tags each is a few
// megabytes, so these bound memory without getting in a real import's way.
const (
	maxImportDevices = 100_000
	maxImportLine    = 16 << 10
	maxImportBytes   = 64 << 20
)

// ImportResult answers a device import with every new secret, shown only
// here.
type ImportResult struct {
	Created int              `json:"created"`
	Devices []ImportedDevice `json:"devices"`
}

// ImportedDevice is one imported device and its secret.
type ImportedDevice struct {
	Key    string `json:"key"`
	Secret string `json:"secret"`
}

func (a *API) importRoutes() {
	path := Prefix + "/products/{product}/devices/import"
	a.router.Post(path, a.plain(ota.RoleOperator, a.importDevices))
	a.documentImport(path)
}

// importDevices creates every device of a CSV body or none: all lines are
// checked before one CreateDevices call.
func (a *API) importDevices(w http.ResponseWriter, r *http.Request) error {
	product := chi.URLParam(r, "product")
	if _, err := a.store.GetProduct(r.Context(), product); err != nil {
		return err
	}
	w = deadline.Transfer(w, r)
	lines, err := readDeviceLines(http.MaxBytesReader(w, r.Body, maxImportBytes))
	if err != nil {
		return err
	}
	p, err := a.store.GetProduct(r.Context(), product)
	if err != nil {
		return err
	}
	devs := make([]store.NewDevice, len(lines))
	res := ImportResult{Created: len(lines), Devices: make([]ImportedDevice, len(lines))}
	for i, l := range lines {
		secret, err := credential.NewDeviceSecret()
		if err != nil {
			return err
		}
		sealed, err := a.seal(p.Protocol, product, l.key, secret)
		if err != nil {
			return err
		}
		devs[i] = store.NewDevice{Product: product, Key: l.key, Tags: l.tags, SecretHash: credential.Hash(secret), SecretSealed: sealed}
		res.Devices[i] = ImportedDevice{Key: l.key, Secret: secret}
	}
	created, err := a.store.CreateDevices(r.Context(), devs)
	if err != nil {
		return err
	}
	a.devicesChanged(r.Context(), created)
	for i, d := range devs {
		a.revoke.CredentialsChanged(product, d.Key)
		secret := res.Devices[i].Secret
		if err := a.account(r.Context(), "created", product, d.Key, func(ctx context.Context, bd brokeradmin.Device) error {
			return a.accounts.CreateDevice(ctx, bd, secret)
		}); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusCreated, res)
	return nil
}

// deviceLine is one parsed line of a device import.
type deviceLine struct {
	key  string
	tags map[string]string
}

// readDeviceLines reads and checks a whole import; any bad line fails it
// with the line number.
func readDeviceLines(body io.Reader) ([]deviceLine, error) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), maxImportLine)
	var lines []deviceLine
	first := map[string]int{} // device key -> line it is on
	n := 0
	for sc.Scan() {
		n++
		raw := sc.Bytes()
		if n == 1 {
			raw = bytes.TrimPrefix(raw, []byte("\ufeff")) // spreadsheet exports start with a BOM
		}
		l, skip, err := parseDeviceLine(string(raw))
		if err != nil {
			return nil, ota.Errorf(ota.EINVALID, "line %d: %s; nothing was imported", n, ota.ErrorMessage(err))
		}
		if skip {
			continue
		}
		if prev, dup := first[l.key]; dup {
			return nil, ota.Errorf(ota.EINVALID, "line %d: device %s is listed twice (first on line %d); nothing was imported", n, quote(l.key), prev)
		}
		if len(lines) == maxImportDevices {
			return nil, ota.Errorf(ota.ETOOLARGE, "the file lists more than %d devices: split it into several imports; nothing was imported", maxImportDevices)
		}
		first[l.key] = n
		lines = append(lines, l)
	}
	if err := scanError(sc.Err(), n+1); err != nil {
		return nil, err
	}
	if len(lines) == 0 {
		return nil, ota.Errorf(ota.EINVALID, "the file lists no devices: write one device per line as key[,tag=value...]")
	}
	return lines, nil
}

func scanError(err error, line int) error {
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bufio.ErrTooLong):
		return ota.Errorf(ota.EINVALID, "line %d is longer than %d bytes; nothing was imported", line, maxImportLine)
	case errors.As(err, &tooBig):
		return ota.Errorf(ota.ETOOLARGE, "the file is larger than %d MiB: split it into several imports; nothing was imported", maxImportBytes>>20)
	}
	return fmt.Errorf("read device import: %w", err)
}

// parseDeviceLine parses "key[,tag=value...]". Blank lines and lines
// starting with '#' are skipped; empty fields (trailing commas from
// spreadsheets) are ignored.
func parseDeviceLine(line string) (l deviceLine, skip bool, err error) {
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "#") {
		return deviceLine{}, true, nil
	}
	fields := strings.Split(line, ",")
	key := strings.TrimSpace(fields[0])
	if err := checkDeviceKey(key); err != nil {
		return deviceLine{}, false, err
	}
	pairs := make([]string, 0, len(fields)-1)
	for _, f := range fields[1:] {
		if f = strings.TrimSpace(f); f != "" {
			pairs = append(pairs, f)
		}
	}
	tags, err := tagRule.parseAll(pairs)
	if err != nil {
		return deviceLine{}, false, err
	}
	return deviceLine{key: key, tags: tags}, false, nil
}

// writeJSON answers v on a plain route. An encoding error is ignored: the
// status is sent already, and only a client that went away makes one.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}
