package dynsec

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/otter-ota/otter/internal/brokeradmin"
	"github.com/otter-ota/otter/sdk/wire"
)

// listPage is how many clients or roles one list command returns: a
// 1,000,000-device broker is listed in messages of a few hundred KiB. A
// variable so that a test can list in small pages.
var listPage = 1000

// syncBatch is how many devices' commands Sync sends in one message: the
// plugin acknowledges a message after all its commands, each of which
// rewrites its file.
const syncBatch = 10

// client is a client as the plugin lists it.
type client struct {
	Username string    `json:"username"`
	Textname string    `json:"textname"`
	Roles    []roleRef `json:"roles"`
}

// role is a role as the plugin lists it.
type role struct {
	Rolename string `json:"rolename"`
	ACLs     []ACL  `json:"acls"`
}

// List returns the devices that have an otter-managed client in the
// broker, sorted by user name.
func (a *Admin) List(ctx context.Context) ([]brokeradmin.Device, error) {
	clients, err := a.clients(ctx)
	if err != nil {
		return nil, err
	}
	var out []brokeradmin.Device
	for _, c := range clients {
		if d, ok := managed(c); ok {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(x, y brokeradmin.Device) int { return cmp.Compare(x.Username(), y.Username()) })
	return out, nil
}

// managed reports whether c is an otter device client, and whose.
func managed(c client) (brokeradmin.Device, bool) {
	p, k, err := wire.ParseUsername(c.Username)
	return brokeradmin.Device{Product: p, Key: k}, err == nil && c.Textname == Marker
}

// Sync makes the broker's device clients match registry: it creates the
// clients (and roles) of registry devices that have none, sets right the
// ones whose role, ACLs or marker differ, and deletes otter-managed clients
// of devices not in the registry. Clients otter did not make are left
// alone, unless their user name is a registry device's. Running it again
// changes nothing.
func (a *Admin) Sync(ctx context.Context, registry []brokeradmin.Want) (brokeradmin.Report, error) {
	clients, err := a.clients(ctx)
	if err != nil {
		return brokeradmin.Report{}, err
	}
	roles, err := a.roles(ctx)
	if err != nil {
		return brokeradmin.Report{}, err
	}
	var rep brokeradmin.Report
	steps := plan(registry, clients, roles)
	for chunk := range slices.Chunk(steps, syncBatch) {
		if err := a.apply(ctx, chunk, &rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// apply sends the commands of some steps in one message and records the
// steps that succeeded.
func (a *Admin) apply(ctx context.Context, steps []step, rep *brokeradmin.Report) error {
	var cmds []command
	for _, s := range steps {
		cmds = append(cmds, s.cmds...)
	}
	errs, err := a.do(ctx, cmds)
	if err != nil {
		return err
	}
	var failed []error
	for _, s := range steps {
		mine := errs[:len(s.cmds)]
		errs = errs[len(s.cmds):]
		if err := s.check(mine); err != nil {
			failed = append(failed, errDevice(s.dev, err))
			continue
		}
		s.record(rep)
	}
	return errors.Join(failed...)
}

// step is what Sync does for one device.
type step struct {
	kind     string // setup (shared roles), created, repaired, deleted, orphan (a role without client)
	dev      brokeradmin.Device
	role     string // of setup
	noSecret bool
	cmds     []command
}

// check fails the step on a refusal; deleting something already gone is
// not one.
func (s step) check(errs []error) error {
	for i, err := range errs {
		if notFound(err) && strings.HasPrefix(s.cmds[i].Command, "delete") {
			errs[i] = nil
		}
	}
	return errors.Join(errs...)
}

func (s step) record(rep *brokeradmin.Report) {
	switch s.kind {
	case "created":
		rep.Created = append(rep.Created, s.dev)
		if s.noSecret {
			rep.NoSecret = append(rep.NoSecret, s.dev)
		}
	case "repaired":
		rep.Repaired = append(rep.Repaired, s.dev)
	case "deleted":
		rep.Deleted = append(rep.Deleted, s.dev)
	case "setup":
		rep.Roles = append(rep.Roles, s.role)
	}
}

// plan compares the registry with the broker's clients and roles and
// returns the steps that make them match, in a stable order.
func plan(registry []brokeradmin.Want, clients []client, roles map[string][]ACL) []step {
	byUser := make(map[string]client, len(clients))
	for _, c := range clients {
		byUser[c.Username] = c
	}
	wanted := make(map[string]bool, len(registry))
	steps := planShared(roles)
	for _, w := range registry {
		if wanted[w.Username()] {
			continue
		}
		wanted[w.Username()] = true
		if s, ok := planDevice(w, byUser, roles); ok {
			steps = append(steps, s)
		}
	}
	for _, c := range clients {
		if d, ok := managed(c); ok && !wanted[c.Username] {
			steps = append(steps, step{kind: "deleted", dev: d, cmds: deleteDevice(d)})
			wanted[c.Username] = true // its role goes with it
		}
	}
	return append(steps, orphanRoles(roles, wanted)...)
}

// planDevice returns the step that gives registry device w a sound
// client and role, if it needs one.
func planDevice(w brokeradmin.Want, byUser map[string]client, roles map[string][]ACL) (step, bool) {
	d := w.Device
	var cmds []command
	acls, hasRole := roles[RoleName(d)]
	switch {
	case !hasRole:
		cmds = append(cmds, createRole(d))
	case !sameACLs(acls, DeviceACLs(d)):
		cmds = append(cmds, modifyRole(d))
	}
	c, hasClient := byUser[d.Username()]
	if !hasClient {
		var secret *string
		if w.Secret != "" {
			secret = &w.Secret
		}
		return step{kind: "created", dev: d, noSecret: secret == nil, cmds: append(cmds, createClient(d, secret))}, true
	}
	if c.Textname != Marker || !sameRoles(c.Roles, deviceRoles(d)) {
		cmds = append(cmds, modifyClient(d, nil))
	}
	return step{kind: "repaired", dev: d, cmds: cmds}, len(cmds) > 0
}

// planShared creates or sets right the roles shared by devices and by
// otter's replicas; they come first, as device clients name them.
func planShared(roles map[string][]ACL) []step {
	var steps []step
	for _, r := range []role{{DeviceRole, DenyACLs()}, {ServiceRole, ServiceACLs()}} {
		acls, ok := roles[r.Rolename]
		switch {
		case !ok:
			steps = append(steps, step{kind: "setup", role: r.Rolename,
				cmds: []command{{Command: "createRole", Rolename: r.Rolename, ACLs: r.ACLs}}})
		case !sameACLs(acls, r.ACLs):
			steps = append(steps, step{kind: "setup", role: r.Rolename,
				cmds: []command{{Command: "modifyRole", Rolename: r.Rolename, ACLs: r.ACLs}}})
		}
	}
	return steps
}

// sameRoles compares role names regardless of order.
func sameRoles(x, y []roleRef) bool {
	names := func(rs []roleRef) []string {
		out := make([]string, len(rs))
		for i, r := range rs {
			out[i] = r.Rolename
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(names(x), names(y))
}

// orphanRoles deletes device roles left without a client (by a create
// that failed half-way).
func orphanRoles(roles map[string][]ACL, wanted map[string]bool) []step {
	var names []string
	for name := range roles {
		user, ok := strings.CutPrefix(name, RolePrefix)
		if ok && !wanted[user] {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	steps := make([]step, 0, len(names))
	for _, name := range names {
		steps = append(steps, step{kind: "orphan", cmds: []command{{Command: "deleteRole", Rolename: name}}})
	}
	return steps
}

// sameACLs compares two rule sets regardless of order.
func sameACLs(x, y []ACL) bool {
	key := func(a ACL) string { return fmt.Sprintf("%s\x00%s\x00%d\x00%t", a.Type, a.Topic, a.Priority, a.Allow) }
	kx, ky := make([]string, len(x)), make([]string, len(y))
	for i := range x {
		kx[i] = key(x[i])
	}
	for i := range y {
		ky[i] = key(y[i])
	}
	slices.Sort(kx)
	slices.Sort(ky)
	return slices.Equal(kx, ky)
}

// clients lists every client, a page at a time.
func (a *Admin) clients(ctx context.Context) ([]client, error) {
	var all []client
	for offset := 0; ; offset += listPage {
		var page struct {
			Total   int      `json:"totalCount"`
			Clients []client `json:"clients"`
		}
		if err := a.list(ctx, "listClients", offset, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Clients...)
		if len(page.Clients) == 0 || offset+listPage >= page.Total {
			return all, nil
		}
	}
}

// roles lists every role with its ACLs, a page at a time.
func (a *Admin) roles(ctx context.Context) (map[string][]ACL, error) {
	all := map[string][]ACL{}
	for offset := 0; ; offset += listPage {
		var page struct {
			Total int    `json:"totalCount"`
			Roles []role `json:"roles"`
		}
		if err := a.list(ctx, "listRoles", offset, &page); err != nil {
			return nil, err
		}
		for _, r := range page.Roles {
			all[r.Rolename] = r.ACLs
		}
		if len(page.Roles) == 0 || offset+listPage >= page.Total {
			return all, nil
		}
	}
}

func (a *Admin) list(ctx context.Context, what string, offset int, into any) error {
	cmd := command{Command: what, Verbose: true, Count: listPage, Offset: offset}
	resp, err := a.exchange(ctx, []command{cmd})
	if err != nil {
		return err
	}
	if resp[0].Error != "" {
		return &CommandError{Command: what, Message: resp[0].Error}
	}
	if err := json.Unmarshal(resp[0].Data, into); err != nil {
		return fmt.Errorf("dynsec: read %s answer: %w", what, err)
	}
	return nil
}
