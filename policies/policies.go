// Package policies is the policy set built into custos: the Rego rules that
// decide every event before it is appended (docs/policies.md), their tests, and the
// tunable facts they read as data under data.custos.config.
//
// The rules and every reason code are documented in docs/policies.md; the
// input they see is docs/policy-input.md. custos.dev/ledger/policy loads the
// set returned by FS, and `custos serve --policies DIR` replaces it with a
// directory laid out the same way.
package policies

import (
	"embed"
	"io/fs"
)

// The set is embedded rather than read at run time so the binary carries the
// exact rules and data its version string names.
//
//go:embed *.rego data
var files embed.FS

// FS returns the built-in policy set, rooted at the set's top: the .rego files
// (rules and their tests) at the root and the data files under data/, where
// data/custos/config/data.json becomes data.custos.config.
func FS() fs.FS {
	return files
}
