package verify_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The stored format and its verifiers can be vendored by an auditor without
// the policy engine or the Vault client (docs/architecture.md, "Modules").
func TestVerifiersDependOnNeitherOPANorVault(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "../verify", "../bundle", "../record", "../checkpoint", "../decision").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.Contains(dep, "open-policy-agent") || strings.Contains(dep, "hashicorp/vault") || dep == "custos.dev/ledger/policy" || dep == "custos.dev/ledger/keys" {
			t.Errorf("a verifier depends on %s", dep)
		}
	}
}
