package consentrecord_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"custos.dev/ledger/consentrecord"
	"custos.dev/ledger/event"
	"custos.dev/ledger/record"
)

// Every term of the vocabulary has a DPV concept, and docs/vocabulary.md
// names the one the records use.
func TestEveryTermHasItsDPVConcept(t *testing.T) {
	docs, err := os.ReadFile("../../docs/vocabulary.md")
	if err != nil {
		t.Fatal(err)
	}
	for kind, terms := range map[string][]string{
		"category":  event.Categories(),
		"purpose":   event.Purposes(),
		"mechanism": event.Mechanisms(),
		"basis":     {"consent", "contract", "legal_obligation", "vital_interests", "public_interest", "publicly_disclosed", "legitimate_interests"},
		"law":       {"PIPL", "GDPR"},
	} {
		for _, term := range terms {
			iri, ok := consentrecord.DPV(kind, term)
			if !ok {
				t.Errorf("%s %s has no DPV concept", kind, term)
				continue
			}
			if !strings.Contains(string(docs), "`"+iri+"`") {
				t.Errorf("docs/vocabulary.md does not name %s for %s %s", iri, kind, term)
			}
		}
	}
}

func rec(t *testing.T, typ, id, at string, data any) *record.Record {
	t.Helper()
	raw, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	return &record.Record{V: 1, Type: typ, ID: id, Source: "https://shop.example", Time: at, Subject: "p1", RecordedAt: at, Data: raw}
}

// A consent's life: given, scoped withdrawal, expiry; the expiry names the
// grant's sequence, being no event of its own.
func TestBuildFollowsTheConsentsLife(t *testing.T) {
	expires := "2026-06-01T00:00:00Z"
	in := consentrecord.Input{
		Pseudonym: "p1", Residence: "DE", Law: "GDPR", Now: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC),
		Notices: []consentrecord.Notice{{Version: "1.0", Language: "de", Controller: &event.Controller{Name: "Acme"}}},
		Entries: []consentrecord.Entry{
			{Seq: 4, Record: rec(t, "privacy.subject.registered", "r", "2026-01-01T00:00:00Z", map[string]any{"residence": "DE", "age": 40})},
			{Seq: 5, Record: rec(t, "privacy.consent.granted", "g", "2026-01-02T00:00:00Z", map[string]any{
				"consent_id": "c1", "notice_version": "1.0", "purposes": []string{"service_provision", "notifications"},
				"categories": []string{"identity.contact"}, "destinations": []string{"US"}, "expires": expires})},
			{Seq: 9, Record: rec(t, "privacy.consent.withdrawn", "w", "2026-02-01T00:00:00Z", map[string]any{"purposes": []string{"notifications"}})},
		},
	}
	doc := consentrecord.Build(in)
	if len(doc.Records) != 1 {
		t.Fatalf("%d records", len(doc.Records))
	}
	r := doc.Records[0]
	var got []string
	for _, e := range r.Events {
		got = append(got, e.Type+"@"+e.Time.Format("2006-01-02")+"#"+strings.Repeat("|", int(e.LedgerSequence)))
	}
	want := []string{"dpv:ConsentGiven@2026-01-02#|||||", "custos:ConsentPartiallyWithdrawn@2026-02-01#|||||||||", "dpv:ConsentExpired@2026-06-01#|||||"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("events\n got %v\nwant %v", got, want)
	}
	if r.ConsentStatus != "dpv:ConsentExpired" || r.ApplicableLaw != "eu-gdpr:GDPR" || strings.Join(r.LegalBasis, ",") != "eu-gdpr:A6-1-a,eu-gdpr:A49-1-a" {
		t.Errorf("status %s, law %s, basis %v", r.ConsentStatus, r.ApplicableLaw, r.LegalBasis)
	}
	if s := r.Events[1].WithdrawnScope; s == nil || strings.Join(s.Purpose, ",") != "dpv:CommunicationManagement" {
		t.Errorf("withdrawn scope %+v", s)
	}
	if r.DataController == nil || r.DataController.Name != "Acme" || r.Notice.Language != "de" || strings.Join(r.Jurisdiction, ",") != "loc:DE" {
		t.Errorf("parties: %+v %+v %v", r.DataController, r.Notice, r.Jurisdiction)
	}
}

// The shipped context is JSON-LD 1.1 and defines every member a record has.
func TestContextDefinesEveryMember(t *testing.T) {
	var ctx struct {
		Context map[string]any `json:"@context"`
	}
	if err := json.Unmarshal(consentrecord.Context(), &ctx); err != nil {
		t.Fatal(err)
	}
	doc := consentrecord.Build(consentrecord.Input{Pseudonym: "p", Now: time.Now(), Entries: []consentrecord.Entry{
		{Seq: 1, Record: rec(t, "privacy.consent.granted", "g", "2026-01-02T00:00:00Z", map[string]any{
			"consent_id": "c1", "notice_version": "1.0", "purposes": []string{"security"}, "categories": []string{"usage.device"},
			"recipients": []string{"acme"}, "cookies": []string{"cookie.analytics"}})},
	}})
	raw, _ := json.Marshal(doc)
	var generic any
	_ = json.Unmarshal(raw, &generic)
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, val := range x {
				if _, ok := ctx.Context[k]; !ok && !strings.HasPrefix(k, "@") {
					t.Errorf("member %s is not defined by the context", k)
				}
				walk(val)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(generic)
}
