package policy

import (
	"context"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

func BenchmarkZZSnippet(b *testing.B) {
	in := transferInput(nil, sgConsent("c-1"))
	v, _ := inputValue(in)
	snippets := map[string]string{
		"a_every": `cats := {k | some k in input.event.data.categories; not startswith(k, "cookie.")}
r if { some c in input.subject.consents; c.consent_id == "c-1"; every k in cats { k in c.categories } }`,
		"b_notfunc": `cats := {k | some k in input.event.data.categories; not startswith(k, "cookie.")}
missing(c) if { some k in cats; not k in c.categories }
r if { some c in input.subject.consents; c.consent_id == "c-1"; not missing(c) }`,
		"c_count": `cats := {k | some k in input.event.data.categories; not startswith(k, "cookie.")}
r if { some c in input.subject.consents; c.consent_id == "c-1"; count({k | some k in cats; k in c.categories}) == count(cats) }`,
		"d_setdiff": `cats := {k | some k in input.event.data.categories; not startswith(k, "cookie.")}
r if { some c in input.subject.consents; c.consent_id == "c-1"; count(cats - {k | some k in c.categories}) == 0 }`,
		"e_base": `cats := {k | some k in input.event.data.categories; not startswith(k, "cookie.")}
r if { some c in input.subject.consents; c.consent_id == "c-1"; count(cats) > 0 }`,
		"i_noop": `r := true`,
	}
	for name, src := range snippets {
		m := ast.MustParseModuleWithOpts("package x\n\n"+src, ast.ParserOptions{RegoVersion: ast.RegoV1})
		c := ast.NewCompiler()
		c.Compile(map[string]*ast.Module{"x.rego": m})
		if c.Failed() {
			b.Fatal(name, c.Errors)
		}
		pq, err := rego.New(rego.Query("data.x.r"), rego.Compiler(c)).PrepareForEval(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				pq.Eval(context.Background(), rego.EvalParsedInput(v))
			}
		})
	}
}
