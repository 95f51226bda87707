package policy

import (
	"context"
	"os"
	"testing"
	"testing/fstest"
	"time"
)

// The built-in set, read from the source tree: ledger must not import
// custos.dev/policies (services depend on both, not ledger on policies).
const realSetDir = "../../policies"

func realSet(t testing.TB) *Set {
	t.Helper()
	s, err := Load(context.Background(), os.DirFS(realSetDir))
	if err != nil {
		t.Fatalf("loading %s: %v", realSetDir, err)
	}
	return s
}

// realFiles copies the built-in set into memory so a test can alter it.
func realFiles(t testing.TB) fstest.MapFS {
	t.Helper()
	files, err := readFiles(os.DirFS(realSetDir))
	if err != nil {
		t.Fatal(err)
	}
	m := fstest.MapFS{}
	for _, f := range files {
		m[f.path] = &fstest.MapFile{Data: f.src}
	}
	return m
}

const configPath = "data/custos/config/data.json"

func mapFS(files map[string]string) fstest.MapFS {
	m := fstest.MapFS{}
	for p, src := range files {
		m[p] = &fstest.MapFile{Data: []byte(src)}
	}
	return m
}

// A minimal valid set that allows everything.
const allowAll = `package custos.decision

decision := {"allow": true, "reasons": [], "obligations": []}
`

const allowAllTest = `package custos.decision_test

import data.custos.decision

test_allows if decision.decision.allow
`

var (
	now      = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	notice1  = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	notice2  = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	granted  = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	nextYear = time.Date(2027, 11, 1, 0, 0, 0, 0, time.UTC)
)

func intp(i int) *int { return &i }

func timep(t time.Time) *time.Time { return &t }

// sgConsent is a separate consent for transfers of contact data to acme-sg in
// Singapore for service provision, as a subject would give it.
func sgConsent(id string, mod ...func(*ConsentState)) ConsentState {
	c := ConsentState{
		ConsentID:      id,
		NoticeVersion:  "2.0",
		Purposes:       []string{"service_provision"},
		Categories:     []string{"identity.contact"},
		Destinations:   []string{"SG"},
		Recipients:     []string{"acme-sg"},
		Cookies:        []string{},
		GrantedAt:      granted,
		Expires:        timep(nextYear),
		WithdrawnScope: Scope{Purposes: []string{}, Destinations: []string{}, Cookies: []string{}, Categories: []string{}},
	}
	for _, m := range mod {
		m(&c)
	}
	return c
}

// otherConsents are consents unrelated to a transfer to Singapore, to give a
// subject a realistic history.
func otherConsents() []ConsentState {
	return []ConsentState{
		sgConsent("c-notify", func(c *ConsentState) {
			c.Purposes, c.Destinations, c.Recipients = []string{"notifications"}, nil, nil
		}),
		sgConsent("c-improve", func(c *ConsentState) {
			c.Purposes, c.Categories, c.Destinations, c.Recipients = []string{"service_improvement"}, []string{"usage.behavior", "usage.device"}, nil, nil
			c.Cookies = []string{"cookie.analytics"}
		}),
		sgConsent("c-hk", func(c *ConsentState) { c.Destinations, c.Recipients = []string{"HK"}, []string{"acme-hk"} }),
		sgConsent("c-old", func(c *ConsentState) {
			c.NoticeVersion, c.Destinations, c.Recipients = "1.0", nil, nil
			c.Withdrawn, c.WithdrawnAt = true, timep(granted)
		}),
	}
}

func subject(consents ...ConsentState) SubjectState {
	return SubjectState{
		Registered:       true,
		Residence:        "CN",
		Age:              intp(30),
		ErasedCategories: []string{},
		LastSeq:          118,
		Consents:         consents,
	}
}

func eventInput(eventType string, data map[string]any, s SubjectState) *Input {
	return &Input{
		Now: now,
		Event: EventInput{
			Type:    eventType,
			Source:  "https://shop.example/orders",
			ID:      "evt-42",
			Time:    now.Add(-2 * time.Second),
			Subject: "p_3q2x",
			Data:    data,
		},
		Subject: s,
		Notices: Notices{Current: "2.0", Versions: []NoticeVersion{{"1.0", notice1}, {"2.0", notice2}}},
	}
}

func transferData(mod map[string]any) map[string]any {
	d := map[string]any{
		"transfer_id": "t-1",
		"recipient":   "acme-sg",
		"from_region": "CN",
		"to_region":   "SG",
		"categories":  []string{"identity.contact"},
		"purpose":     "service_provision",
		"mechanism":   "standard_contract",
	}
	for k, v := range mod {
		if v == nil {
			delete(d, k)
			continue
		}
		d[k] = v
	}
	return d
}

// transferInput is a transfer to Singapore by a subject holding the given
// consents plus a realistic history of others.
func transferInput(mod map[string]any, consents ...ConsentState) *Input {
	return eventInput("privacy.data.transferred", transferData(mod), subject(append(otherConsents(), consents...)...))
}

func codes(d Decision) []string {
	out := make([]string, len(d.Reasons))
	for i, r := range d.Reasons {
		out[i] = r.Code
	}
	return out
}
