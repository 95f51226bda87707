package whatif_test

import (
	"context"
	"encoding/json"
	"testing"
	"testing/fstest"

	"custos.dev/ledger/decision"
	"custos.dev/ledger/policy"
	"custos.dev/ledger/record"
	"custos.dev/ledger/whatif"
)

type records [][]byte

func (r records) Events(_ context.Context, fn func(uint64, []byte) error) error {
	for i, b := range r {
		if err := fn(uint64(i+1), b); err != nil {
			return err
		}
	}
	return nil
}

// allowed is the stored body of an event of type typ about subject p that
// was allowed, with data.
func allowed(t *testing.T, typ, id string, data any) []byte {
	t.Helper()
	raw, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	const at = "2026-11-01T00:00:00Z"
	return body(t, &record.Record{V: 1, Type: typ, ID: id, Source: "/s", Time: at, Subject: "p", RecordedAt: at, Data: raw,
		Decision: &decision.Decision{Allow: true, Reasons: []decision.Reason{}, Obligations: []any{}}})
}

var (
	registration = map[string]any{"residence": "CN", "age": 30}
	grant        = map[string]any{"consent_id": "c", "notice_version": "1", "purposes": []string{"security"}, "categories": []string{"usage.device"}}
	use          = map[string]any{"purpose": "security", "categories": []string{"usage.device"}}
)

func body(t *testing.T, r *record.Record) []byte {
	t.Helper()
	b, err := record.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// candidate allows an event only while the subject has no consent: a rule
// that depends on the state of the moment.
const candidate = `package custos.decision

decision := {"allow": true, "reasons": [], "obligations": []} if {
	count(input.subject.consents) == 0
} else := {"allow": false, "reasons": [{"code": "HAS_CONSENT", "message": "m"}], "obligations": []}

test_allows if decision.allow with input as {"subject": {"consents": []}}
`

func TestRunRedecidesWithTheStateOfEachMoment(t *testing.T) {
	set, err := policy.Load(context.Background(), fstest.MapFS{"decision.rego": {Data: []byte(candidate)}})
	if err != nil {
		t.Fatal(err)
	}
	src := records{
		allowed(t, "privacy.subject.registered", "r", registration),
		allowed(t, "privacy.consent.granted", "c", grant),
		allowed(t, "privacy.data.used", "u", use),
	}
	rep, err := whatif.Run(context.Background(), src, set, whatif.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The registration and the consent were decided with no consent yet:
	// unchanged. The use came after the consent: denied now.
	if rep.Evaluated != 3 || rep.Unchanged != 2 || rep.AllowToDeny != 1 || len(rep.Changes) != 1 || rep.Changes[0].Seq != 3 ||
		rep.Changes[0].Subject != "p" || rep.ByReason["HAS_CONSENT"] != 1 {
		t.Fatalf("report %+v", rep)
	}
	rep, err = whatif.Run(context.Background(), src, set, whatif.Options{Range: whatif.Range{ToSeq: 2}})
	if err != nil || rep.Evaluated != 2 || rep.Changed() {
		t.Fatalf("range to 2: %+v %v", rep, err)
	}
}

// noConsents refuses every consent and allows anything else only while the
// subject holds none.
const noConsents = `package custos.decision

decision := {"allow": false, "reasons": [{"code": "NO_CONSENTS_HERE", "message": "m"}], "obligations": []} if {
	input.event.type == "privacy.consent.granted"
} else := {"allow": true, "reasons": [], "obligations": []} if {
	count(input.subject.consents) == 0
} else := {"allow": false, "reasons": [{"code": "HAS_CONSENT", "message": "m"}], "obligations": []}

test_refuses_consents if not decision.allow with input as {"event": {"type": "privacy.consent.granted"}}
`

// In cascade mode a consent the candidate refuses is not in the state the
// next decision sees; with the recorded state it is.
func TestCascadeSeesTheCandidatesOwnHistory(t *testing.T) {
	set, err := policy.Load(context.Background(), fstest.MapFS{"decision.rego": {Data: []byte(noConsents)}})
	if err != nil {
		t.Fatal(err)
	}
	src := records{
		allowed(t, "privacy.consent.granted", "c", grant),
		allowed(t, "privacy.data.used", "u", use),
	}
	recorded, err := whatif.Run(context.Background(), src, set, whatif.Options{})
	if err != nil || recorded.Mode != "recorded-state" || len(recorded.Changes) != 2 {
		t.Fatalf("recorded state: %+v %v; want the consent and the use changed", recorded, err)
	}
	cascade, err := whatif.Run(context.Background(), src, set, whatif.Options{Cascade: true})
	if err != nil || cascade.Mode != "cascade" || len(cascade.Changes) != 1 || cascade.Changes[0].Seq != 1 || cascade.Unchanged != 1 {
		t.Fatalf("cascade: %+v %v; want only the consent changed", cascade, err)
	}
}
