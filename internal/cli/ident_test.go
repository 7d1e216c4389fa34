package cli_test

import (
	"strings"
	"testing"

	"github.com/otter-ota/otter/sdk/wire"
)

// TestHelpStatesTheIdentifierRulesTheServerEnforces: the help of the
// commands that take keys states the rule of sdk/wire, and the server
// enforces that rule: a module "Modem" that devices may report is one
// firmware may be added for, and a device key with ':' is refused.
func TestHelpStatesTheIdentifierRulesTheServerEnforces(t *testing.T) {
	o := startOtter(t)
	for _, cmd := range [][]string{{"product", "create"}, {"device", "create"}, {"firmware", "add"}} {
		help := strings.Join(strings.Fields(o.ok(append(cmd, "--help")...)), " ")
		if !strings.Contains(help, wire.KeyRule) {
			t.Errorf("otter %s --help does not state the key rule %q:\n%s", strings.Join(cmd, " "), wire.KeyRule, help)
		}
	}
	o.ok("product", "create", "Demo")
	o.ok("firmware", "add", "--product", "Demo", "--module", "Modem", "--version", "2.0.0", "--file", writeFile(t, "modem"))
	o.fails(1, `device key "aa:bb" is not valid`, "device", "create", "Demo", "aa:bb")
	o.fails(1, `module "-m" is not valid`, "firmware", "add", "--product", "Demo", "--module", "-m", "--version", "2.0.0", "--file", writeFile(t, "m"))
}
