package dynsec

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/otter-ota/otter/internal/brokeradmin"
)

// How the plugin of Mosquitto 2.0 stores a password: PBKDF2-HMAC-SHA512
// of the password with a random salt, each in base64. Read from the file
// the plugin wrote after a createClient: 12 bytes of salt, 101 iterations,
// a 64-byte hash.
const (
	pwSaltLen    = 12
	pwIterations = 101
	pwHashLen    = sha512.Size
)

// SeedFile writes the accounts of devices, as CreateDevice would make
// them, and the shared roles (Setup) into the dynamic security plugin's
// file at path, and gives each of services (otter's broker user, which
// must be in the file) the service role, as GrantService would. Clients
// and roles of the same name are replaced; everything else in the file is
// kept.
//
// It is the bulk path to a large fleet: the plugin rewrites its whole
// file after every command, so creating accounts one command at a time
// takes time quadratic in their number. The plugin reads the file only
// when Mosquitto starts and overwrites it after any command: Mosquitto
// must not run on the file while it is seeded, and must be (re)started
// afterwards.
func SeedFile(path string, devices []brokeradmin.Want, services ...string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("dynsec: seed: %w", err)
	}
	var file map[string]json.RawMessage
	if err := json.Unmarshal(raw, &file); err != nil {
		return fmt.Errorf("dynsec: seed: read %s: %w", path, err)
	}
	var clients, roles []map[string]any
	for key, into := range map[string]*[]map[string]any{"clients": &clients, "roles": &roles} {
		if f, ok := file[key]; ok {
			if err := json.Unmarshal(f, into); err != nil {
				return fmt.Errorf("dynsec: seed: read %s of %s: %w", key, path, err)
			}
		}
	}
	roles = replace(roles, "rolename", fileRole(DeviceRole, DenyACLs()), fileRole(ServiceRole, ServiceACLs()))
	added := make([]map[string]any, 0, len(devices))
	addedRoles := make([]map[string]any, 0, len(devices))
	for _, w := range devices {
		c, err := fileClient(w)
		if err != nil {
			return err
		}
		added = append(added, c)
		addedRoles = append(addedRoles, fileRole(RoleName(w.Device), DeviceACLs(w.Device)))
	}
	clients = replace(clients, "username", added...)
	roles = replace(roles, "rolename", addedRoles...)
	for _, user := range services {
		if err := grantInFile(clients, user, ServiceRole); err != nil {
			return err
		}
	}
	for key, v := range map[string]any{"clients": clients, "roles": roles} {
		if file[key], err = json.Marshal(v); err != nil {
			return fmt.Errorf("dynsec: seed: %w", err)
		}
	}
	out, err := json.Marshal(file)
	if err != nil {
		return fmt.Errorf("dynsec: seed: %w", err)
	}
	return writeAtomically(path, out)
}

// fileClient is device w's client as the plugin saves it. The file spells
// textName where the commands say textname.
func fileClient(w brokeradmin.Want) (map[string]any, error) {
	var roles []map[string]any
	for _, r := range deviceRoles(w.Device) {
		roles = append(roles, map[string]any{"rolename": r.Rolename, "priority": r.Priority})
	}
	c := map[string]any{"username": w.Username(), "textName": Marker, "roles": roles}
	if w.Secret == "" {
		return c, nil // as Sync creates it: no password until the secret is rotated
	}
	hash, salt, err := hashPassword(w.Secret)
	if err != nil {
		return nil, errDevice(w.Device, err)
	}
	c["password"], c["salt"], c["iterations"] = hash, salt, pwIterations
	return c, nil
}

func fileRole(name string, acls []ACL) map[string]any {
	return map[string]any{"rolename": name, "acls": acls}
}

// hashPassword hashes password as the plugin does, with a new salt.
func hashPassword(password string) (hash, salt string, err error) {
	s := make([]byte, pwSaltLen)
	if _, err := rand.Read(s); err != nil {
		return "", "", err
	}
	h, err := passwordHash(password, s, pwIterations)
	return h, base64.StdEncoding.EncodeToString(s), err
}

// passwordHash is the plugin's hash of password with salt, in base64.
func passwordHash(password string, salt []byte, iterations int) (string, error) {
	h, err := pbkdf2.Key(sha512.New, password, salt, iterations, pwHashLen)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(h), nil
}

// replace puts entries into list, each in place of the one of the same
// key (username or rolename) or at the end.
func replace(list []map[string]any, key string, entries ...map[string]any) []map[string]any {
	at := make(map[any]int, len(list))
	for i, e := range list {
		at[e[key]] = i
	}
	for _, e := range entries {
		if i, ok := at[e[key]]; ok {
			list[i] = e
			continue
		}
		at[e[key]] = len(list)
		list = append(list, e)
	}
	return list
}

// grantInFile gives client user role, unless it has it.
func grantInFile(clients []map[string]any, user, role string) error {
	for _, c := range clients {
		if c["username"] != user {
			continue
		}
		roles, _ := c["roles"].([]any)
		for _, r := range roles {
			if m, ok := r.(map[string]any); ok && m["rolename"] == role {
				return nil
			}
		}
		c["roles"] = append(roles, map[string]any{"rolename": role})
		return nil
	}
	return fmt.Errorf("dynsec: seed: no client %q in the file to give role %s", user, role)
}

// writeAtomically replaces path's content by data, so that a broker
// started meanwhile reads the old file or the new one, never half of it.
func writeAtomically(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".seed-*")
	if err != nil {
		return fmt.Errorf("dynsec: seed: %w", err)
	}
	_, err = tmp.Write(data)
	err = errors.Join(err, tmp.Chmod(0o600), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("dynsec: seed %s: %w", path, err)
	}
	return nil
}
