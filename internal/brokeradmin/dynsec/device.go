package dynsec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/otter-ota/otter/internal/brokeradmin"
)

var (
	_ brokeradmin.Provisioner = (*Admin)(nil)
	_ brokeradmin.Reconciler  = (*Admin)(nil)
)

// CreateDevice creates device d's role and client with secret. When they
// exist already (a repeated call, or an account Sync made without a
// secret) it sets them right and sets the secret.
func (a *Admin) CreateDevice(ctx context.Context, d brokeradmin.Device, secret string) error {
	return a.ensureDevice(ctx, d, &secret)
}

// ensureDevice creates d's role and client, or modifies the ones that
// exist; secret nil leaves the password as it is (none for a new client).
func (a *Admin) ensureDevice(ctx context.Context, d brokeradmin.Device, secret *string) error {
	errs, err := a.do(ctx, []command{createRole(d), createClient(d, secret)})
	if err == nil && notFound(errs[1]) { // the shared role: first device, or deleted by hand
		if err := a.Setup(ctx); err != nil {
			return err
		}
		errs, err = a.do(ctx, []command{createRole(d), createClient(d, secret)})
	}
	if err != nil {
		return err
	}
	var again []command
	if exists(errs[0]) {
		again, errs[0] = append(again, modifyRole(d)), nil
	}
	if exists(errs[1]) {
		again, errs[1] = append(again, modifyClient(d, secret)), nil
	}
	if err := errors.Join(errs...); err != nil || len(again) == 0 {
		return err
	}
	return a.run(ctx, again)
}

// RotateSecret sets device d's new secret, so the old one stops working at
// once: the plugin disconnects the client's open connections when its
// password changes. A device without an account gets one.
func (a *Admin) RotateSecret(ctx context.Context, d brokeradmin.Device, secret string) error {
	errs, err := a.do(ctx, []command{{Command: "setClientPassword", Username: d.Username(), Password: &secret}})
	switch {
	case err != nil:
		return err
	case notFound(errs[0]):
		return a.CreateDevice(ctx, d, secret)
	}
	return errors.Join(errs...)
}

// DeleteDevice deletes device d's client, which disconnects its open
// connections, and its role. An absent account is not an error.
func (a *Admin) DeleteDevice(ctx context.Context, d brokeradmin.Device) error {
	return a.run(ctx, deleteDevice(d), notFound)
}

// Setup creates (or sets right) the roles every device and otter's
// replicas share: DeviceRole and ServiceRole. Run it once at start; the
// other methods also run it when they find a role missing.
func (a *Admin) Setup(ctx context.Context) error {
	return a.run(ctx, []command{
		{Command: "createRole", Rolename: DeviceRole, ACLs: DenyACLs()},
		{Command: "modifyRole", Rolename: DeviceRole, ACLs: DenyACLs()},
		{Command: "createRole", Rolename: ServiceRole, ACLs: ServiceACLs()},
		{Command: "modifyRole", Rolename: ServiceRole, ACLs: ServiceACLs()},
	}, exists)
}

// EnsureService gives user the otter-service role (and runs Setup), for
// otter's replicas. With a password, the client is created too (or its
// password set); without, it must exist: typically the admin user otter
// itself connects as.
func (a *Admin) EnsureService(ctx context.Context, user, password string) error {
	if err := a.Setup(ctx); err != nil {
		return err
	}
	var cmds []command
	if password != "" {
		cmds = append(cmds, command{Command: "createClient", Username: user, Password: &password},
			command{Command: "setClientPassword", Username: user, Password: &password})
	}
	cmds = append(cmds, command{Command: "addClientRole", Username: user, Rolename: ServiceRole})
	return a.run(ctx, cmds, exists)
}

// run sends cmds and fails on any refusal that none of ok excuses.
func (a *Admin) run(ctx context.Context, cmds []command, ok ...func(error) bool) error {
	errs, err := a.do(ctx, cmds)
	if err != nil {
		return err
	}
	for i, e := range errs {
		for _, excused := range ok {
			if excused(e) {
				errs[i] = nil
			}
		}
	}
	return errors.Join(errs...)
}

func createRole(d brokeradmin.Device) command {
	return command{Command: "createRole", Rolename: RoleName(d), ACLs: DeviceACLs(d)}
}

func modifyRole(d brokeradmin.Device) command {
	return command{Command: "modifyRole", Rolename: RoleName(d), ACLs: DeviceACLs(d)}
}

func createClient(d brokeradmin.Device, secret *string) command {
	return command{Command: "createClient", Username: d.Username(), Password: secret, Textname: Marker, Roles: deviceRoles(d)}
}

func modifyClient(d brokeradmin.Device, secret *string) command {
	return command{Command: "modifyClient", Username: d.Username(), Password: secret, Textname: Marker, Roles: deviceRoles(d)}
}

// deviceRoles are a device client's roles: its own allowances first, then
// the shared denials.
func deviceRoles(d brokeradmin.Device) []roleRef {
	return []roleRef{{Rolename: RoleName(d), Priority: prioOwn}, {Rolename: DeviceRole, Priority: prioShare}}
}

func deleteDevice(d brokeradmin.Device) []command {
	return []command{
		{Command: "deleteClient", Username: d.Username()},
		{Command: "deleteRole", Rolename: RoleName(d)},
	}
}

// errDevice names the device in an error.
func errDevice(d brokeradmin.Device, err error) error {
	return fmt.Errorf("device %s: %w", d, err)
}

// GrantService gives user, otter's own broker user, the otter-service role
// (and runs Setup) unless it has it already, so that restarting replicas
// change nothing. The plugin closes a client's connections when its roles
// change: when user is the admin itself, this connection goes too, and
// the grant is checked again over the next one.
func (a *Admin) GrantService(ctx context.Context, user string) error {
	if err := a.Setup(ctx); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		has, err := a.hasRole(ctx, user, ServiceRole)
		if err != nil || has {
			return err
		}
		if attempt > 0 {
			return fmt.Errorf("dynsec: %s still lacks role %s after addClientRole", user, ServiceRole)
		}
		err = a.run(ctx, []command{{Command: "addClientRole", Username: user, Rolename: ServiceRole}})
		if err != nil && !errors.Is(err, ErrConnectionLost) {
			return err
		}
	}
}

// hasRole reports whether client user has role.
func (a *Admin) hasRole(ctx context.Context, user, role string) (bool, error) {
	resp, err := a.exchange(ctx, []command{{Command: "getClient", Username: user}})
	if err != nil {
		return false, err
	}
	if resp[0].Error != "" {
		return false, &CommandError{Command: "getClient", Target: user, Message: resp[0].Error}
	}
	var data struct {
		Client client `json:"client"`
	}
	if err := json.Unmarshal(resp[0].Data, &data); err != nil {
		return false, fmt.Errorf("dynsec: read getClient answer: %w", err)
	}
	for _, r := range data.Client.Roles {
		if r.Rolename == role {
			return true, nil
		}
	}
	return false, nil
}
