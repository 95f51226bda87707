package policies_test

// These tests are how CI proves the policy set: they do in Go what
// `opa test --coverage`, `opa check --strict` and `opa fmt --diff` do on the
// command line, against exactly the files FS embeds.

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/format"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/util"

	"custos.dev/policies"
)

// minCoverage is the share of policy lines (tests excluded) the Rego tests
// must exercise.
const minCoverage = 90.0

type set struct {
	sources map[string][]byte
	modules map[string]*ast.Module
	data    map[string]any
}

func loadSet(t *testing.T) set {
	t.Helper()
	s := set{sources: map[string][]byte{}, modules: map[string]*ast.Module{}, data: map[string]any{}}
	err := fs.WalkDir(policies.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		src, err := fs.ReadFile(policies.FS(), p)
		if err != nil {
			return err
		}
		switch {
		case strings.HasSuffix(p, ".rego"):
			m, err := ast.ParseModuleWithOpts(p, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
			if err != nil {
				return err
			}
			s.sources[p] = src
			s.modules[p] = m
		case strings.HasPrefix(p, "data/") && (strings.HasSuffix(p, ".json") || strings.HasSuffix(p, ".yaml")):
			var v any
			if err := util.Unmarshal(src, &v); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			dir := strings.Trim(path.Dir(strings.TrimPrefix(p, "data/")), ".")
			node := s.data
			for _, seg := range strings.Split(dir, "/") {
				if seg == "" {
					continue
				}
				next, ok := node[seg].(map[string]any)
				if !ok {
					next = map[string]any{}
					node[seg] = next
				}
				node = next
			}
			obj, ok := v.(map[string]any)
			if !ok {
				return fmt.Errorf("%s: not an object", p)
			}
			for k, val := range obj {
				if _, dup := node[k]; dup {
					return fmt.Errorf("%s: %s defined twice", p, k)
				}
				node[k] = val
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.modules) == 0 {
		t.Fatal("no .rego files embedded")
	}
	return s
}

func TestRegoTestsPassWithCoverage(t *testing.T) {
	s := loadSet(t)
	ctx := context.Background()
	cov := cover.New()
	runner := tester.NewRunner().
		SetCompiler(ast.NewCompiler().WithEnablePrintStatements(true)).
		SetStore(inmem.NewFromObject(s.data)).
		SetModules(s.modules).
		SetCoverageQueryTracer(cov).
		RaiseBuiltinErrors(true)
	ch, err := runner.RunTests(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for r := range ch {
		n++
		if !r.Pass() {
			t.Errorf("%s.%s: %s (error: %v, output: %s)", r.Package, r.Name, r.String(), r.Error, r.Output)
		}
	}
	if n < 50 {
		t.Errorf("only %d Rego tests ran", n)
	}

	report := cov.Report(s.modules)
	var covered, notCovered int
	for file, fr := range report.Files {
		if strings.HasSuffix(file, "_test.rego") {
			continue
		}
		covered += fr.CoveredLines
		notCovered += fr.NotCoveredLines
		for _, rng := range fr.NotCovered {
			t.Logf("%s:%d-%d not covered", file, rng.Start.Row, rng.End.Row)
		}
	}
	if covered+notCovered == 0 {
		t.Fatal("coverage report is empty")
	}
	pct := 100 * float64(covered) / float64(covered+notCovered)
	t.Logf("%d Rego tests, policy coverage %.1f%% (with tests %.1f%%)", n, pct, report.Coverage)
	if pct < minCoverage {
		t.Errorf("policy coverage %.1f%% is below %.0f%%", pct, minCoverage)
	}
}

func TestCompilesStrict(t *testing.T) {
	s := loadSet(t)
	c := ast.NewCompiler().WithStrict(true).WithCapabilities(ast.CapabilitiesForThisVersion())
	if c.Compile(s.modules); c.Failed() {
		t.Fatal(c.Errors)
	}
	decision := ast.MustParseRef("data.custos.decision.decision")
	if len(c.GetRules(decision)) == 0 {
		t.Fatal("no rule data.custos.decision.decision")
	}
}

func TestFormatted(t *testing.T) {
	s := loadSet(t)
	for p, src := range s.sources {
		want, err := format.SourceWithOpts(p, src, format.Opts{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if !bytes.Equal(src, want) {
			t.Errorf("%s is not opa fmt formatted; run opa fmt -w policies/", p)
		}
	}
}

// The shipped defaults docs/policies.md names.
func TestShippedDefaults(t *testing.T) {
	config := loadSet(t).data["custos"].(map[string]any)["config"].(map[string]any)
	strs := func(key string) []string {
		var out []string
		var node any = config
		for _, k := range strings.Split(key, ".") {
			node = node.(map[string]any)[k]
		}
		for _, v := range node.([]any) {
			out = append(out, v.(string))
		}
		slices.Sort(out)
		return out
	}
	for key, want := range map[string][]string{
		"storage_regions":          {"CN"},
		"transfer_destinations":    {"DE", "HK", "SG"},
		"transfer_mechanisms":      {"certification", "security_assessment", "standard_contract"},
		"gdpr.transfer_mechanisms": {"binding_corporate_rules", "standard_contractual_clauses"},
		"necessary_cookies":        {"cookie.security", "cookie.session"},
		"allowed_purposes": {"customer_support", "interactive_features", "legal_compliance", "notifications",
			"security", "service_improvement", "service_provision"},
	} {
		if got := strs(key); !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}
	if config["require_assessment_ref"] != false {
		t.Errorf("require_assessment_ref = %v, want false", config["require_assessment_ref"])
	}
	bases := config["lawful_bases"].(map[string]any)
	purposes := bases["purposes"].(map[string]any)
	for _, c := range []string{"identity.basic", "identity.contact", "identity.account", "usage.diagnostic"} {
		if got := purposes["service_provision"].(map[string]any)["categories"].(map[string]any)[c]; got != "contract" {
			t.Errorf("basis of %s for service_provision = %v, want contract", c, got)
		}
	}
	if bases["default"] != "consent" || purposes["legal_compliance"].(map[string]any)["default"] != "legal_obligation" {
		t.Errorf("lawful bases: default %v, legal_compliance %v", bases["default"], purposes["legal_compliance"])
	}
	if got := fmt.Sprint(config["guardian_age"]); got != "18" {
		t.Errorf("guardian_age = %s, want 18", got)
	}
	rights := config["rights"].(map[string]any)
	days := rights["deadline_days"].(map[string]any)
	for j, want := range map[string]string{"PIPL": "15", "GDPR": "30"} {
		for _, right := range []string{"access", "correction", "deletion", "withdrawal", "portability", "complaint"} {
			if got := fmt.Sprint(days[j].(map[string]any)[right]); got != want {
				t.Errorf("%s %s deadline = %s days, want %s", j, right, got, want)
			}
		}
	}
	byResidence := rights["jurisdiction_by_residence"].(map[string]any)
	if byResidence["CN"] != "PIPL" || byResidence["FR"] != "GDPR" || rights["default_jurisdiction"] != "PIPL" {
		t.Errorf("jurisdictions: %v, default %v", byResidence, rights["default_jurisdiction"])
	}
}

// shippedInput is a decision input over the shipped data: a subject of the
// given residence and age with the given consents, and one event.
func shippedInput(typ string, data map[string]any, residence string, age int, consents ...map[string]any) map[string]any {
	cs := []any{}
	for _, c := range consents {
		cs = append(cs, c)
	}
	return map[string]any{
		"now": "2026-11-29T10:00:00Z",
		"event": map[string]any{
			"type": typ, "source": "https://shop.example", "id": "e-1",
			"time": "2026-11-29T09:59:58Z", "subject": "p_x", "data": data,
		},
		"subject": map[string]any{"registered": true, "residence": residence, "age": age, "erased": false,
			"erased_categories": []any{}, "last_seq": 3, "consents": cs},
		"notices": map[string]any{"current": "2.0", "versions": []any{map[string]any{"version": "2.0", "effective": "2026-10-01T00:00:00Z"}}},
	}
}

func shippedConsent(overrides map[string]any) map[string]any {
	c := map[string]any{
		"consent_id": "c-1", "notice_version": "2.0", "purposes": []any{"service_provision"},
		"categories": []any{"identity.contact"}, "destinations": []any{"SG", "US"}, "recipients": []any{"acme"},
		"cookies": []any{}, "guardian": false, "granted_at": "2026-11-01T00:00:00Z", "expires": nil,
		"withdrawn": false, "withdrawn_at": nil,
		"withdrawn_scope": map[string]any{"purposes": []any{}, "destinations": []any{}, "cookies": []any{}, "categories": []any{}},
	}
	for k, v := range overrides {
		c[k] = v
	}
	return c
}

func collection(categories []any, region string) map[string]any {
	return map[string]any{"categories": categories, "purpose": "service_provision", "storage_region": region,
		"retention": "P1Y", "fields": []any{"email"}}
}

func transferData(from, to, mechanism string) map[string]any {
	d := map[string]any{"transfer_id": "t-1", "recipient": "acme", "from_region": from, "to_region": to,
		"categories": []any{"identity.contact"}, "purpose": "service_provision"}
	if mechanism != "" {
		d["mechanism"] = mechanism
	}
	return d
}

// verdict is a decision as "allow basis [codes]".
func verdict(t *testing.T, pq rego.PreparedEvalQuery, input map[string]any) string {
	t.Helper()
	rs, err := pq.Eval(context.Background(), rego.EvalInput(input))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) == 0 {
		return "undefined"
	}
	d := rs[0].Expressions[0].Value.(map[string]any)
	codes := []string{}
	for _, r := range d["reasons"].([]any) {
		codes = append(codes, r.(map[string]any)["code"].(string))
	}
	out := fmt.Sprintf("%v %v", d["allow"], codes)
	if b, ok := d["basis"]; ok {
		out += " " + b.(string)
	}
	if g, ok := d["transfer_ground"]; ok {
		out += " " + g.(string)
	}
	return out
}

// The rules decide with the shipped data too (the Rego tests use their own
// settings so that tuning the data never breaks them): what the platform does
// every day is allowed on its lawful basis, and what the privacy policy
// reserves to consent is not.
func TestShippedDataDecides(t *testing.T) {
	s := loadSet(t)
	c := ast.NewCompiler()
	if c.Compile(s.modules); c.Failed() {
		t.Fatal(c.Errors)
	}
	pq, err := rego.New(
		rego.Query("data.custos.decision.decision"),
		rego.Compiler(c),
		rego.Store(inmem.NewFromObject(s.data)),
		rego.StrictBuiltinErrors(true),
	).PrepareForEval(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	guardian := shippedConsent(map[string]any{"guardian": true})
	for _, tc := range []struct {
		name  string
		input map[string]any
		want  string
	}{
		{"account and contact data for the service, no consent",
			shippedInput("privacy.data.collected", collection([]any{"identity.account", "identity.contact"}, "CN"), "CN", 30),
			"true [] contract"},
		{"necessary cookies, no consent",
			shippedInput("privacy.data.collected", collection([]any{"cookie.session", "cookie.security"}, "CN"), "CN", 30),
			"true [] contract"},
		{"preference cookies, no consent",
			shippedInput("privacy.data.collected", collection([]any{"cookie.preference"}, "CN"), "CN", 30),
			"false [COOKIE_CONSENT_REQUIRED]"},
		{"analytics cookies, no consent",
			shippedInput("privacy.data.collected", collection([]any{"cookie.analytics"}, "CN"), "CN", 30),
			"false [COOKIE_CONSENT_REQUIRED]"},
		{"behaviour data for the service, no consent",
			shippedInput("privacy.data.collected", collection([]any{"usage.behavior"}, "CN"), "CN", 30),
			"false [PURPOSE_NOT_CONSENTED]"},
		{"storage abroad, no consent",
			shippedInput("privacy.data.collected", collection([]any{"identity.account"}, "SG"), "CN", 30),
			"false [NO_SEPARATE_CONSENT]"},
		{"a minor's collection, no guardian consent",
			shippedInput("privacy.data.collected", collection([]any{"identity.account"}, "CN"), "CN", 15),
			"false [GUARDIAN_CONSENT_REQUIRED]"},
		{"a minor's collection, guardian consent",
			shippedInput("privacy.data.collected", collection([]any{"identity.account"}, "CN"), "CN", 15, guardian),
			"true [] contract"},
		{"PIPL transfer to SG with separate consent",
			shippedInput("privacy.data.transferred", transferData("CN", "SG", "standard_contract"), "CN", 30, shippedConsent(nil)),
			"true [] consent"},
		{"PIPL transfer to US", shippedInput("privacy.data.transferred", transferData("CN", "US", "standard_contract"), "CN", 30, shippedConsent(nil)),
			"false [DESTINATION_NOT_ALLOWED]"},
		{"PIPL domestic transfer", shippedInput("privacy.data.transferred", transferData("CN", "CN", ""), "CN", 30),
			"true [] contract"},
		{"EEA resident, adequate destination", shippedInput("privacy.data.transferred", transferData("DE", "JP", ""), "DE", 30),
			"true [] contract adequacy_decision"},
		{"EEA resident, standard contractual clauses",
			shippedInput("privacy.data.transferred", transferData("DE", "US", "standard_contractual_clauses"), "FR", 30),
			"true [] contract appropriate_safeguards"},
		{"EEA resident, no safeguard", shippedInput("privacy.data.transferred", transferData("DE", "US", ""), "DE", 30),
			"false [NO_TRANSFER_GROUND]"},
		{"EEA resident, inside the EEA", shippedInput("privacy.data.transferred", transferData("DE", "NL", ""), "DE", 30),
			"true [] contract"},
	} {
		if got := verdict(t, pq, tc.input); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// Loaded the way plain OPA loads a directory or a bundle (`opa eval -d
// policies/`, `opa build policies/`), the data files land under data.data
// rather than data.custos.config, so the set has no settings: it must then
// deny, not allow a transfer to a destination no setting permits.
func TestPlainOPALoadFailsClosed(t *testing.T) {
	us := shippedInput("privacy.data.transferred", transferData("CN", "US", "standard_contract"), "CN", 30, shippedConsent(nil))
	ctx := context.Background()

	result, err := loader.NewFileLoader().WithRegoVersion(ast.RegoV1).Filtered([]string{"."}, func(_ string, info fs.FileInfo, _ int) bool {
		return !info.IsDir() && strings.HasSuffix(info.Name(), "_test.rego")
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := result.Documents["custos"]; ok {
		t.Fatalf("the loader put settings at data.custos: %v", result.Documents["custos"])
	}
	store := inmem.NewFromObject(result.Documents)
	opts := []func(*rego.Rego){rego.Query("data.custos.decision.decision"), rego.Store(store)}
	for _, m := range result.ParsedModules() {
		opts = append(opts, rego.ParsedModule(m))
	}
	pq, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := verdict(t, pq, us); got != "false [CONFIG_MISSING]" {
		t.Errorf("directory load: US transfer decided %s, want false [CONFIG_MISSING]", got)
	}

	b, err := loader.NewFileLoader().WithRegoVersion(ast.RegoV1).WithSkipBundleVerification(true).AsBundle(".")
	if err != nil {
		t.Fatal(err)
	}
	pq, err = rego.New(rego.Query("data.custos.decision.decision"), rego.ParsedBundle("policies", b)).PrepareForEval(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := verdict(t, pq, us); got != "false [CONFIG_MISSING]" {
		t.Errorf("bundle load: US transfer decided %s, want false [CONFIG_MISSING]", got)
	}
}

var codePattern = regexp.MustCompile(`reason\("([A-Z_]+)"|"(CONSENT_WITHDRAWN|CONSENT_EXPIRED|NOTICE_SUPERSEDED|[A-Z_]+_NOT_CONSENTED|COOKIE_CONSENT_REQUIRED|NO_SEPARATE_CONSENT)"`)

// Every reason code the rules can give is tested and documented, and the codes
// docs/policies.md lists all exist.
func TestReasonCodesTestedAndDocumented(t *testing.T) {
	s := loadSet(t)
	ruleCodes := map[string]bool{}
	var tests strings.Builder
	for p, src := range s.sources {
		if strings.HasSuffix(p, "_test.rego") {
			tests.Write(src)
			continue
		}
		for _, m := range codePattern.FindAllStringSubmatch(string(src), -1) {
			ruleCodes[m[1]+m[2]] = true
		}
	}
	for _, code := range []string{"NO_SEPARATE_CONSENT", "DESTINATION_NOT_ALLOWED", "NO_TRANSFER_MECHANISM",
		"CONSENT_WITHDRAWN", "CONSENT_EXPIRED", "CATEGORY_NOT_CONSENTED", "PURPOSE_NOT_CONSENTED",
		"RECIPIENT_NOT_CONSENTED", "COOKIE_CONSENT_REQUIRED", "STORAGE_REGION_NOT_ALLOWED",
		"GUARDIAN_CONSENT_REQUIRED", "SHARING_BASIS_INVALID", "PURPOSE_NOT_ALLOWED", "SUBJECT_ERASED", "POLICY_ERROR"} {
		if !ruleCodes[code] {
			t.Errorf("the contract's code %s is given by no rule", code)
		}
	}
	docs, err := os.ReadFile("../docs/policies.md")
	if err != nil {
		t.Fatal(err)
	}
	for code := range ruleCodes {
		if !strings.Contains(tests.String(), `"`+code+`"`) {
			t.Errorf("reason code %s is not asserted by any Rego test", code)
		}
		if !strings.Contains(string(docs), "`"+code+"`") {
			t.Errorf("reason code %s is not documented in docs/policies.md", code)
		}
	}
}
