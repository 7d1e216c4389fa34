package dynsec

import (
	"fmt"
	"slices"
	"testing"

	"github.com/otter-ota/otter/internal/brokeradmin"
)

// plan turns the difference between the registry and the listed broker
// state into commands: a table of the cases, without a broker.
func TestPlan(t *testing.T) {
	a, b := dev("p", "a"), dev("p", "b")
	sound := func(d brokeradmin.Device) client {
		return client{Username: d.Username(), Textname: Marker, Roles: deviceRoles(d)}
	}
	shared := map[string][]ACL{DeviceRole: DenyACLs(), ServiceRole: ServiceACLs()}
	with := func(extra map[string][]ACL) map[string][]ACL {
		m := map[string][]ACL{}
		for k, v := range shared {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name     string
		registry []brokeradmin.Want
		clients  []client
		roles    map[string][]ACL
		want     []string // kind:target:commands
	}{
		{"in step", []brokeradmin.Want{{Device: a}}, []client{sound(a)},
			with(map[string][]ACL{RoleName(a): DeviceACLs(a)}), nil},
		{"empty broker", []brokeradmin.Want{{Device: a, Secret: "s"}, {Device: b}}, nil, nil, []string{
			"setup:otter-device:[createRole]", "setup:otter-service:[createRole]",
			"created:p/a:[createRole createClient]", "created:p/b:[createRole createClient]"}},
		{"registry lists a device twice", []brokeradmin.Want{{Device: a}, {Device: a}}, nil, shared,
			[]string{"created:p/a:[createRole createClient]"}},
		{"role changed, shared role changed", []brokeradmin.Want{{Device: a}}, []client{sound(a)},
			map[string][]ACL{DeviceRole: DenyACLs()[1:], ServiceRole: ServiceACLs(), RoleName(a): DeviceACLs(a)[1:]},
			[]string{"setup:otter-device:[modifyRole]", "repaired:p/a:[modifyRole]"}},
		{"client without role or marker", []brokeradmin.Want{{Device: a}},
			[]client{{Username: "p/a", Roles: []roleRef{{Rolename: ServiceRole}}}}, shared,
			[]string{"repaired:p/a:[createRole modifyClient]"}},
		{"gone device, foreign clients, orphan role", nil,
			[]client{sound(a), {Username: "grafana"}, {Username: "p/hand-made"}},
			with(map[string][]ACL{RoleName(a): DeviceACLs(a), RolePrefix + "p/orphan": nil}),
			[]string{"deleted:p/a:[deleteClient deleteRole]", "orphan::[deleteRole]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, s := range plan(tc.registry, tc.clients, tc.roles) {
				var cmds []string
				for _, c := range s.cmds {
					cmds = append(cmds, c.Command)
				}
				target := s.role
				if s.kind != "setup" && s.kind != "orphan" {
					target = s.dev.Username()
				}
				got = append(got, fmt.Sprintf("%s:%s:%v", s.kind, target, cmds))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("plan =\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}
