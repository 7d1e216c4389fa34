package dynsec

import (
	"slices"
	"testing"

	"github.com/otter-ota/otter/internal/brokeradmin"
)

// Sync creates the clients of registry devices that have none (without a
// password when the secret is unknown), repairs damaged ones, deletes
// otter's clients of devices gone from the registry, leaves other clients
// alone, and changes nothing when run again.
func TestSyncReconcilesWithTheRegistry(t *testing.T) {
	e := newEnv(t)
	ctx := testContext(t)
	keep, gone, adopt, damaged := dev("p", "keep"), dev("p", "gone"), dev("p", "adopt"), dev("p", "damaged")
	fresh, legacy := dev("p", "new"), dev("p", "legacy")
	e.create(t, keep, gone, damaged)
	// Clients otter did not make: one that is not a device, one named like
	// a device that is not in the registry, one of a registry device.
	for _, user := range []string{"grafana", "p/foreign", adopt.Username()} {
		if err := e.admin.EnsureService(ctx, user, "pw-"+user); err != nil {
			t.Fatal(err)
		}
	}
	// A role that lost a rule, and a role whose client creation failed.
	// And a shared role that lost one.
	if err := e.admin.run(ctx, []command{
		{Command: "modifyRole", Rolename: RoleName(damaged), ACLs: DeviceACLs(damaged)[1:]},
		{Command: "createRole", Rolename: RolePrefix + "p/orphan"},
		{Command: "modifyRole", Rolename: DeviceRole, ACLs: DenyACLs()[1:]},
	}); err != nil {
		t.Fatal(err)
	}

	registry := []brokeradmin.Want{{Device: keep}, {Device: adopt}, {Device: damaged},
		{Device: fresh, Secret: "secret-new"}, {Device: legacy}}
	listPage = 2 // list in several pages
	t.Cleanup(func() { listPage = 1000 })
	rep, err := e.admin.Sync(ctx, registry)
	if err != nil {
		t.Fatal(err)
	}
	want := brokeradmin.Report{
		Created:  []brokeradmin.Device{fresh, legacy},
		NoSecret: []brokeradmin.Device{legacy},
		Repaired: []brokeradmin.Device{adopt, damaged},
		Deleted:  []brokeradmin.Device{gone},
		Roles:    []string{DeviceRole},
	}
	if !sameReport(rep, want) {
		t.Errorf("Sync = %+v\nwant %+v", rep, want)
	}
	e.login(t, fresh, session{})
	e.login(t, keep, session{})
	for _, d := range []brokeradmin.Device{gone, legacy} {
		if code, c := e.dial(t, d.Username(), "secret-"+d.Key, session{}); c != nil {
			t.Errorf("%s connected after Sync (CONNACK 0x%02x)", d, code)
		}
	}
	for _, user := range []string{"grafana", "p/foreign"} {
		e.mustDial(t, user, "pw-"+user, session{})
	}
	// The adopted client is now a confined device.
	c := e.mustDial(t, adopt.Username(), "pw-"+adopt.Username(), session{})
	if code := c.publish(t, "otter/v1/p/keep/inform", "forged"); code < 0x80 {
		t.Errorf("adopted device published to another device's topic: PUBACK 0x%02x", code)
	}

	again, err := e.admin.Sync(ctx, registry)
	if err != nil || again.Changed() || len(again.NoSecret) > 0 {
		t.Errorf("second Sync = %+v, %v; want no change", again, err)
	}
	if err := e.admin.RotateSecret(ctx, legacy, "secret-legacy"); err != nil {
		t.Fatal(err)
	}
	e.login(t, legacy, session{})
	devs, err := e.admin.List(ctx)
	wantDevs := []brokeradmin.Device{adopt, damaged, keep, legacy, fresh}
	if err != nil || !slices.Equal(devs, wantDevs) {
		t.Errorf("List = %v, %v; want %v", devs, err, wantDevs)
	}
}

func sameReport(x, y brokeradmin.Report) bool {
	return slices.Equal(x.Created, y.Created) && slices.Equal(x.NoSecret, y.NoSecret) &&
		slices.Equal(x.Repaired, y.Repaired) && slices.Equal(x.Deleted, y.Deleted) && slices.Equal(x.Roles, y.Roles)
}
