package sim

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/ota"
)

// credential is what a simulated device logs in with.
type credential struct {
	key, secret, version string
}

// provision makes sure the product and the fleet's devices exist, reusing
// devices and known secrets from an earlier run: missing devices are
// imported in one request per 10,000, and existing devices whose secret is
// unknown get a new one.
func provision(ctx context.Context, cfg Config) ([]credential, error) {
	if err := ensureProduct(ctx, cfg); err != nil {
		return nil, err
	}
	known, err := loadSecrets(cfg)
	if err != nil {
		return nil, err
	}
	existing, err := existingDevices(ctx, cfg)
	if err != nil {
		return nil, err
	}
	creds := make([]credential, cfg.Devices)
	var missing []string
	for i := range creds {
		key := fmt.Sprintf("%s%05d", cfg.Prefix, i+1)
		creds[i] = credential{key: key, secret: known[key], version: cfg.Version}
		if d, ok := existing[key]; ok {
			if v := d.Versions[cfg.Module]; v != "" {
				creds[i].version = v
			}
			if creds[i].secret == "" {
				if creds[i].secret, err = rotate(ctx, cfg, key); err != nil {
					return nil, err
				}
			}
			continue
		}
		missing = append(missing, key)
	}
	imported, err := importDevices(ctx, cfg, missing)
	if err != nil {
		return nil, err
	}
	for i := range creds {
		if s, ok := imported[creds[i].key]; ok {
			creds[i].secret = s
		}
		known[creds[i].key] = creds[i].secret
	}
	if cfg.Secrets != nil {
		if err := cfg.Secrets.Save(known); err != nil {
			return nil, fmt.Errorf("sim: save device secrets: %w", err)
		}
	}
	return creds, nil
}

// ensureProduct creates the product when it is missing, open to EnOS
// devices when the fleet speaks EnOS's protocol. An existing product is
// not switched: a product that does not take EnOS devices is an error
// that says how to switch it.
func ensureProduct(ctx context.Context, cfg Config) error {
	p, err := cfg.API.Product(ctx, cfg.Product)
	var ae *client.Error
	if errors.As(err, &ae) && ae.Status == 404 {
		p, err = cfg.API.CreateProduct(ctx, client.ProductCreate{Key: cfg.Product, Name: "Simulated devices", Protocol: productProtocol(cfg.Protocol)})
	}
	if err != nil {
		return fmt.Errorf("sim: product %s: %w", cfg.Product, err)
	}
	if cfg.Protocol == ProtocolEnOS && p.Protocol != ota.ProtocolEnOS {
		return fmt.Errorf("sim: product %s does not accept EnOS devices: switch it (otter product update %s --protocol enos) and simulate with a new --prefix, "+
			"since devices created before the switch have no secret an EnOS login can use, or simulate on a new product", cfg.Product, cfg.Product)
	}
	return nil
}

// productProtocol is the protocol of a product made for a fleet speaking
// protocol: otter's own devices need nothing more.
func productProtocol(protocol string) string {
	if protocol == ProtocolEnOS {
		return ota.ProtocolEnOS
	}
	return ""
}

func loadSecrets(cfg Config) (map[string]string, error) {
	if cfg.Secrets == nil {
		return map[string]string{}, nil
	}
	known, err := cfg.Secrets.Load()
	if err != nil {
		return nil, fmt.Errorf("sim: load device secrets: %w", err)
	}
	return known, nil
}

func existingDevices(ctx context.Context, cfg Config) (map[string]client.Device, error) {
	out := map[string]client.Device{}
	f := client.DeviceFilter{Product: cfg.Product, Prefix: cfg.Prefix}
	for d, err := range cfg.API.AllDevices(ctx, f, client.ListOptions{Limit: 1000}) {
		if err != nil {
			return nil, fmt.Errorf("sim: list devices: %w", err)
		}
		out[d.Key] = d
	}
	return out, nil
}

func rotate(ctx context.Context, cfg Config, key string) (string, error) {
	d, err := cfg.API.RotateDeviceSecret(ctx, cfg.Product, key)
	if err != nil {
		return "", fmt.Errorf("sim: new secret for %s: %w", key, err)
	}
	return d.Secret, nil
}

// importDevices creates devices with the initial version reported, in
// chunks the API accepts.
func importDevices(ctx context.Context, cfg Config, keys []string) (map[string]string, error) {
	out := make(map[string]string, len(keys))
	const chunk = 10000
	for start := 0; start < len(keys); start += chunk {
		var b strings.Builder
		for _, k := range keys[start:min(start+chunk, len(keys))] {
			b.WriteString(k)
			b.WriteString(",sim=true\n")
		}
		res, err := cfg.API.ImportDevices(ctx, cfg.Product, strings.NewReader(b.String()))
		if err != nil {
			return nil, fmt.Errorf("sim: create devices: %w", err)
		}
		for _, d := range res.Devices {
			out[d.Key] = d.Secret
		}
	}
	return out, nil
}
