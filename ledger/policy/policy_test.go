package policy

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"
)

func TestLoadRealSet(t *testing.T) {
	s := realSet(t)
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(s.Revision()) {
		t.Errorf("revision %q", s.Revision())
	}
	if again := realSet(t); again.Revision() != s.Revision() {
		t.Errorf("revision not stable: %s then %s", s.Revision(), again.Revision())
	}
	config := s.Config()
	if got := config["storage_regions"]; !slices.Equal(got.([]any), []any{"CN"}) {
		t.Errorf("storage_regions = %v", got)
	}
	config["storage_regions"].([]any)[0] = "US"
	config["guardian_age"] = 1
	if got := s.Config(); got["storage_regions"].([]any)[0] != "CN" || got["guardian_age"] == 1 {
		t.Error("Config exposes the set's own data to mutation")
	}
}

func TestDecideReasonCodes(t *testing.T) {
	s := realSet(t)
	ctx := context.Background()
	minor := subject(sgConsent("c-1"))
	minor.Age = intp(16)
	erased := subject(sgConsent("c-1"))
	erased.Erased = true

	tests := []struct {
		name  string
		in    *Input
		codes []string
	}{
		{"transfer allowed", transferInput(nil, sgConsent("c-1")), nil},
		{"destination not allowed", transferInput(map[string]any{"to_region": "US"},
			sgConsent("c-1", func(c *ConsentState) { c.Destinations = []string{"US"} })), []string{"DESTINATION_NOT_ALLOWED"}},
		{"no mechanism", transferInput(map[string]any{"mechanism": nil}, sgConsent("c-1")), []string{"NO_TRANSFER_MECHANISM"}},
		{"no separate consent", transferInput(nil), []string{"NO_SEPARATE_CONSENT"}},
		{"consent withdrawn", transferInput(nil, sgConsent("c-1", func(c *ConsentState) {
			c.Withdrawn, c.WithdrawnAt = true, timep(now.Add(-time.Hour))
		})), []string{"CONSENT_WITHDRAWN"}},
		{"destination withdrawn by scope", transferInput(nil, sgConsent("c-1", func(c *ConsentState) {
			c.WithdrawnScope.Destinations = []string{"SG"}
		})), []string{"CONSENT_WITHDRAWN"}},
		{"consent expired", transferInput(nil, sgConsent("c-1", func(c *ConsentState) {
			c.Expires = timep(now.Add(-time.Hour))
		})), []string{"CONSENT_EXPIRED"}},
		{"purpose not consented", transferInput(map[string]any{"purpose": "customer_support"}, sgConsent("c-1")),
			[]string{"PURPOSE_NOT_CONSENTED"}},
		{"category not consented", transferInput(map[string]any{"categories": []any{"identity.contact", "identity.basic"}}, sgConsent("c-1")),
			[]string{"CATEGORY_NOT_CONSENTED"}},
		{"recipient not consented", transferInput(map[string]any{"recipient": "globex-sg"}, sgConsent("c-1")),
			[]string{"RECIPIENT_NOT_CONSENTED"}},
		{"guardian consent required", eventInput("privacy.data.transferred", transferData(nil), minor),
			[]string{"GUARDIAN_CONSENT_REQUIRED"}},
		{"minor's consent without guardian", eventInput("privacy.consent.granted", map[string]any{
			"consent_id": "c-9", "notice_version": "2.0", "purposes": []string{"notifications"}, "categories": []string{"identity.contact"},
		}, minor), []string{"GUARDIAN_CONSENT_REQUIRED"}},
		{"consent naming a refused destination is recorded", eventInput("privacy.consent.granted", map[string]any{
			"consent_id": "c-9", "notice_version": "2.0", "purposes": []string{"notifications"}, "categories": []string{"identity.contact"},
			"destinations": []string{"US"},
		}, subject()), nil},
		{"cookie consent required", eventInput("privacy.data.collected", map[string]any{
			"categories": []string{"cookie.preference"}, "purpose": "service_provision", "storage_region": "CN", "retention": "P30D",
		}, subject(sgConsent("c-1"))), []string{"COOKIE_CONSENT_REQUIRED"}},
		{"storage abroad refused", eventInput("privacy.data.collected", map[string]any{
			"categories": []string{"identity.contact"}, "purpose": "service_provision", "storage_region": "US", "retention": "P1Y",
			"fields": []string{"email"},
		}, subject(sgConsent("c-1", func(c *ConsentState) { c.Destinations = []string{"US"} }))),
			[]string{"DESTINATION_NOT_ALLOWED", "STORAGE_REGION_NOT_ALLOWED"}},
		{"sharing basis invalid", eventInput("privacy.data.shared", map[string]any{
			"recipient": "globex", "recipient_kind": "third_party", "basis": "service_provider",
			"categories": []string{"identity.contact"}, "purpose": "service_provision", "region": "CN",
		}, subject()), []string{"SHARING_BASIS_INVALID"}},
		{"erased subject", eventInput("privacy.data.used", map[string]any{
			"categories": []string{"identity.contact"}, "purpose": "service_provision",
		}, erased), []string{"SUBJECT_ERASED"}},
		{"erased subject's request closed", eventInput("privacy.rights.completed", map[string]any{
			"request_id": "r-1", "outcome": "fulfilled",
		}, erased), nil},
		{"notice published without subject", eventInput("privacy.notice.published", map[string]any{
			"version": "3.0", "effective": "2026-12-01T00:00:00Z",
		}, SubjectState{}), nil},
		{"unknown type", eventInput("privacy.data.sold", map[string]any{}, subject()), []string{"EVENT_TYPE_UNKNOWN"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := s.Decide(ctx, tt.in)
			if d.PolicyRevision != s.Revision() {
				t.Errorf("policy_revision %q, want %q", d.PolicyRevision, s.Revision())
			}
			if got := codes(d); !slices.Equal(got, tt.codes) {
				t.Fatalf("reasons %v (%v), want %v", got, d.Reasons, tt.codes)
			}
			if d.Allow != (len(tt.codes) == 0) {
				t.Errorf("allow = %v with reasons %v", d.Allow, d.Reasons)
			}
			if d.Reasons == nil || d.Obligations == nil {
				t.Error("reasons and obligations must be lists, not null")
			}
			for _, r := range d.Reasons {
				if r.Message == "" || strings.Contains(r.Message, "p_3q2x") {
					t.Errorf("reason message %q", r.Message)
				}
			}
		})
	}
}

func TestDecideObligations(t *testing.T) {
	s := realSet(t)
	d := s.Decide(context.Background(), transferInput(nil, sgConsent("c-1")))
	want := []any{map[string]any{"kind": "record_transfer_register", "destination": "SG"}}
	if !d.Allow || len(d.Obligations) != 1 || !equalJSON(d.Obligations, want) {
		t.Errorf("obligations %v, want %v", d.Obligations, want)
	}
	in := eventInput("privacy.rights.requested", map[string]any{"request_id": "r-1", "right": "access"}, subject())
	in.Subject.Residence = "FR"
	d = s.Decide(context.Background(), in)
	if len(d.Obligations) != 1 {
		t.Fatalf("obligations %v", d.Obligations)
	}
	o := d.Obligations[0].(map[string]any)
	if o["kind"] != "rights_deadline" || o["jurisdiction"] != "GDPR" || o["days"].(interface{ String() string }).String() != "30" {
		t.Errorf("rights obligation %v", o)
	}
}

func equalJSON(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		am, bm := a[i].(map[string]any), b[i].(map[string]any)
		if len(am) != len(bm) {
			return false
		}
		for k, v := range bm {
			if am[k] != v {
				return false
			}
		}
	}
	return true
}

func TestDecideWithTunedData(t *testing.T) {
	files := realFiles(t)
	base, err := Load(context.Background(), files)
	if err != nil {
		t.Fatal(err)
	}
	us := transferInput(map[string]any{"to_region": "US"}, sgConsent("c-1", func(c *ConsentState) { c.Destinations = []string{"US"} }))
	if d := base.Decide(context.Background(), us); d.Allow {
		t.Fatal("transfer to US allowed by the shipped data")
	}

	// Tuning the data changes decisions and the revision, and the set's own
	// tests still pass because they decide with their own settings.
	config := strings.Replace(string(files[configPath].Data), `"transfer_destinations": ["HK", "SG", "DE"]`,
		`"transfer_destinations": ["HK", "SG", "DE", "US"]`, 1)
	if config == string(files[configPath].Data) {
		t.Fatal("could not find transfer_destinations in the shipped data")
	}
	files[configPath].Data = []byte(config)
	tuned, err := Load(context.Background(), files)
	if err != nil {
		t.Fatal(err)
	}
	if tuned.Revision() == base.Revision() {
		t.Error("revision unchanged after the data changed")
	}
	if d := tuned.Decide(context.Background(), us); !d.Allow {
		t.Errorf("transfer to US denied after adding US: %v", d.Reasons)
	}
}

// Without its data file, or with a setting of the wrong type, the built-in
// set would deny everything (as it does under plain OPA); Custos refuses to
// load it at all, naming the problem, and the active set stays.
func TestLoadRefusesUnusableSettings(t *testing.T) {
	files := realFiles(t)
	delete(files, configPath)
	if _, err := Load(context.Background(), files); !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(err.Error(), "CONFIG_MISSING") {
		t.Errorf("without settings: %v", err)
	}
	files = realFiles(t)
	files[configPath] = &fstest.MapFile{Data: bytes.Replace(files[configPath].Data, []byte(`"guardian_age": 18`), []byte(`"guardian_age": "18"`), 1)}
	if _, err := Load(context.Background(), files); !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(err.Error(), "CONFIG_INVALID: setting guardian_age must be a number") {
		t.Errorf("guardian_age a string: %v", err)
	}
}

func TestRevisionCoversPathsAndContent(t *testing.T) {
	a := revision([]file{{"a.rego", []byte("x")}, {"data/d.json", []byte("{}")}})
	for _, other := range [][]file{
		{{"a.rego", []byte("y")}, {"data/d.json", []byte("{}")}},
		{{"b.rego", []byte("x")}, {"data/d.json", []byte("{}")}},
		{{"a.rego", []byte("x")}, {"data/d.json", []byte("{ }")}},
		{{"a.rego", []byte("x")}},
		{{"a.rego", []byte("xdata/d.json")}, {"", []byte("{}")}},
	} {
		if revision(other) == a {
			t.Errorf("revision of %v equals that of the original", other)
		}
	}
}

func TestLoadRefusesBrokenSets(t *testing.T) {
	tests := map[string]map[string]string{
		"syntax error":              {"decision.rego": "package custos.decision\n\ndecision := {\n"},
		"strict: unused assignment": {"decision.rego": allowAll + "\nunused if {\n\tx := 1\n}\n"},
		"failing test": {"decision.rego": allowAll, "decision_test.rego": `package custos.decision_test

import data.custos.decision

test_denies if not decision.decision.allow
`},
		"erroring test": {"decision.rego": allowAll, "decision_test.rego": `package custos.decision_test

test_parses if time.parse_rfc3339_ns("yesterday")
`},
		"no decision rule":   {"other.rego": "package custos.other\n\nx := 1\n"},
		"no rego":            {"data/custos/config/data.json": "{}"},
		"bad data":           {"decision.rego": allowAll, "data/custos/config/data.json": "{"},
		"data not object":    {"decision.rego": allowAll, "data/custos/config/data.json": "[1]"},
		"data defined twice": {"decision.rego": allowAll, "data/custos/config/data.json": `{"a": 1}`, "data/custos/data.json": `{"config": {"a": 2}}`},
		"bad rights":         {"decision.rego": allowAll, "data/custos/config/data.json": `{"rights": {"deadline_days": {"PIPL": {"access": -1}}}}`},
		"config not object":  {"decision.rego": allowAll, "data/custos/data.json": `{"config": ["CN"]}`},
		"config null":        {"decision.rego": allowAll, "data/custos/data.json": `{"config": null}`},
	}
	for name, files := range tests {
		t.Run(name, func(t *testing.T) {
			s, err := Load(context.Background(), mapFS(files))
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("Load = %v, %v; want ErrInvalidPolicy", s, err)
			}
		})
	}
}

func TestLoadFailingTestNamed(t *testing.T) {
	_, err := Load(context.Background(), mapFS(map[string]string{"decision.rego": allowAll, "decision_test.rego": `package custos.decision_test

import data.custos.decision

test_denies if not decision.decision.allow

test_allows if decision.decision.allow
`}))
	if err == nil || !strings.Contains(err.Error(), "data.custos.decision_test.test_denies") || strings.Contains(err.Error(), "test_allows") {
		t.Errorf("error %v should name the failing test only", err)
	}
}

func TestLoadMergesDataAndSkipsOtherFiles(t *testing.T) {
	s, err := Load(context.Background(), mapFS(map[string]string{
		"decision.rego":                   allowAll,
		"decision_test.rego":              allowAllTest,
		"data/custos/config/data.json":    `{"storage_regions": ["CN"]}`,
		"data/custos/config/extra.yaml":   "guardian_age: 16\n",
		"data/custos/data.json":           `{"config": {"necessary_cookies": []}}`,
		"testdata/broken.rego":            "not rego",
		".hidden/broken.rego":             "not rego",
		"README.md":                       "# notes",
		"policies.go":                     "package policies",
		"notdata/custos/config/data.json": `{"storage_regions": ["US"]}`,
	}))
	if err != nil {
		t.Fatal(err)
	}
	c := s.Config()
	if len(c) != 3 || c["guardian_age"].(interface{ String() string }).String() != "16" || c["storage_regions"].([]any)[0] != "CN" {
		t.Errorf("config %v", c)
	}
}

func TestDecidePolicyError(t *testing.T) {
	ctx := context.Background()
	tests := map[string]struct {
		rego string
		in   *Input
	}{
		"conflicting outputs": {`package custos.decision

decision := {"allow": true, "reasons": [], "obligations": []} if input.event.type == "privacy.data.used"

decision := {"allow": false, "reasons": [], "obligations": []} if input.event.id == "evt-42"
`, eventInput("privacy.data.used", nil, subject())},
		"failing built-in": {`package custos.decision

decision := {"allow": time.parse_rfc3339_ns(input.event.source) > 0, "reasons": [], "obligations": []}
`, eventInput("privacy.data.used", nil, subject())},
		"undefined": {`package custos.decision

decision := {"allow": true, "reasons": [], "obligations": []} if input.event.type == "never"
`, eventInput("privacy.data.used", nil, subject())},
		"not an object":     {"package custos.decision\n\ndecision := \"yes\"\n", eventInput("privacy.data.used", nil, subject())},
		"allow not boolean": {"package custos.decision\n\ndecision := {\"allow\": \"yes\"}\n", eventInput("privacy.data.used", nil, subject())},
		"reason without code": {"package custos.decision\n\ndecision := {\"allow\": false, \"reasons\": [{\"message\": \"m\"}]}\n",
			eventInput("privacy.data.used", nil, subject())},
		"allowed with reasons": {"package custos.decision\n\ndecision := {\"allow\": true, \"reasons\": [{\"code\": \"X\", \"message\": \"m\"}]}\n",
			eventInput("privacy.data.used", nil, subject())},
		"obligations not a list": {"package custos.decision\n\ndecision := {\"allow\": true, \"obligations\": {}}\n",
			eventInput("privacy.data.used", nil, subject())},
		"no input": {allowAll, nil},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			s, err := Load(ctx, mapFS(map[string]string{"decision.rego": tt.rego}), AllowUntested())
			if err != nil {
				t.Fatal(err)
			}
			d := s.Decide(ctx, tt.in)
			if d.Allow || !slices.Equal(codes(d), []string{CodePolicyError}) || d.PolicyRevision != s.Revision() {
				t.Errorf("decision %+v, want a POLICY_ERROR deny", d)
			}
			if strings.Contains(d.Reasons[0].Message, "shop.example") {
				t.Errorf("message quotes the input: %q", d.Reasons[0].Message)
			}
		})
	}
}

func TestDecideCancelled(t *testing.T) {
	s := realSet(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d := s.Decide(ctx, transferInput(nil, sgConsent("c-1")))
	if d.Allow || !slices.Equal(codes(d), []string{CodePolicyError}) {
		t.Errorf("decision under a cancelled context %+v", d)
	}
}

func TestRightsDeadline(t *testing.T) {
	s := realSet(t)
	const day = 24 * time.Hour
	for _, tt := range []struct {
		right, residence string
		want             time.Duration
	}{
		{"access", "CN", 15 * day},
		{"deletion", "CN", 15 * day},
		{"access", "DE", 30 * day},
		{"portability", "FR", 30 * day},
		{"access", "US", 15 * day},
		{"access", "", 15 * day},
		{"unheard-of", "FR", 30 * day},
	} {
		if got := s.RightsDeadline(tt.right, tt.residence); got != tt.want {
			t.Errorf("RightsDeadline(%q, %q) = %v, want %v", tt.right, tt.residence, got, tt.want)
		}
	}

	bare, err := Load(context.Background(), mapFS(map[string]string{"decision.rego": allowAll}), AllowUntested())
	if err != nil {
		t.Fatal(err)
	}
	if got := bare.RightsDeadline("access", "CN"); got != 0 {
		t.Errorf("RightsDeadline without configured deadlines = %v", got)
	}
	fallback, err := Load(context.Background(), mapFS(map[string]string{"decision.rego": allowAll,
		"data/custos/config/data.json": `{"rights": {"default_jurisdiction": "PIPL",
			"jurisdiction_by_residence": {"DE": "GDPR"}, "deadline_days": {"PIPL": {"access": 10}}}}`}), AllowUntested())
	if err != nil {
		t.Fatal(err)
	}
	if got := fallback.RightsDeadline("access", "DE"); got != 10*day {
		t.Errorf("RightsDeadline falling back to the default jurisdiction = %v", got)
	}
}

func TestEngineSwapWhileDeciding(t *testing.T) {
	a := realSet(t)
	b, err := Load(context.Background(), mapFS(map[string]string{"decision.rego": allowAll}), AllowUntested())
	if err != nil {
		t.Fatal(err)
	}
	// The deadline is wall time, and this test is not about it.
	e := NewEngine(a, WithDeadline(time.Minute))
	if e.Active() != a {
		t.Fatal("Active is not the initial set")
	}
	in := transferInput(nil, sgConsent("c-1"))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				d := e.Decide(context.Background(), in)
				if d.PolicyRevision != a.Revision() && d.PolicyRevision != b.Revision() {
					t.Errorf("revision %q of neither set", d.PolicyRevision)
					return
				}
				if !d.Allow {
					t.Errorf("denied: %v", d.Reasons)
					return
				}
			}
		})
	}
	for i := range 100 {
		if i%2 == 0 {
			e.Swap(b)
		} else {
			e.Swap(a)
		}
	}
	wg.Wait()
	if e.Active() != a {
		t.Error("the last swap did not stick")
	}
}

func TestEngineWithoutSet(t *testing.T) {
	e := NewEngine(nil)
	d := e.Decide(context.Background(), transferInput(nil, sgConsent("c-1")))
	if d.Allow || !slices.Equal(codes(d), []string{CodePolicyError}) {
		t.Errorf("decision without a set %+v", d)
	}
}

func TestEngineActivateSkipsSameRevision(t *testing.T) {
	files := mapFS(map[string]string{"decision.rego": allowAll})
	a, err := Load(context.Background(), files, AllowUntested())
	if err != nil {
		t.Fatal(err)
	}
	again, err := Load(context.Background(), files, AllowUntested())
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(nil)
	if !e.Activate(a) || e.Active() != a {
		t.Fatal("first activation refused")
	}
	if e.Activate(again) || e.Active() != a {
		t.Error("a set of the same revision was activated again")
	}
	b := realSet(t)
	if !e.Activate(b) || e.Active() != b {
		t.Error("a new revision was not activated")
	}
}
