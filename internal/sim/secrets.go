package sim

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
)

// FileSecrets keeps device secrets in a CSV file (key,secret), readable by
// its owner only, so that a later run of the simulator reuses the devices.
type FileSecrets string

// Load implements SecretStore; a missing file holds no secrets.
func (p FileSecrets) Load() (map[string]string, error) {
	f, err := os.Open(string(p))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	out := make(map[string]string, len(rows))
	for i, r := range rows {
		if len(r) != 2 {
			return nil, fmt.Errorf("%s line %d: want key,secret", p, i+1)
		}
		out[r[0]] = r[1]
	}
	return out, nil
}

// Save implements SecretStore, replacing the file atomically.
func (p FileSecrets) Save(secrets map[string]string) error {
	if err := os.MkdirAll(filepath.Dir(string(p)), 0o700); err != nil {
		return err
	}
	tmp := string(p) + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	for _, k := range slices.Sorted(maps.Keys(secrets)) {
		if err := w.Write([]string{k, secrets[k]}); err != nil {
			f.Close()
			return err
		}
	}
	w.Flush()
	if err := errors.Join(w.Error(), f.Sync(), f.Close()); err != nil {
		return err
	}
	return os.Rename(tmp, string(p))
}
