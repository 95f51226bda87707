package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/piprate/json-gold/ld"

	"custos.dev/ledger/consentrecord"
)

// servedContextLoader resolves the records' context from the Custos that
// served them, and nothing else: no network at run time.
type servedContextLoader struct{ base string }

func (l servedContextLoader) LoadDocument(u string) (*ld.RemoteDocument, error) {
	if u != consentrecord.ContextURL {
		return nil, ld.NewJsonLdError(ld.LoadingDocumentFailed, "unexpected context "+u)
	}
	res, err := http.Get(l.base + "/contexts/iso27560-v1.jsonld")
	if err != nil {
		return nil, ld.NewJsonLdError(ld.LoadingDocumentFailed, err)
	}
	defer res.Body.Close()
	doc, err := ld.DocumentFromReader(res.Body)
	if err != nil {
		return nil, ld.NewJsonLdError(ld.LoadingDocumentFailed, err)
	}
	return &ld.RemoteDocument{DocumentURL: u, Document: doc}, nil
}

// A subject with two consents, one withdrawn, gets two ISO/IEC TS 27560
// records that a JSON-LD processor expands without dropping a term (every
// term is defined by the context Custos ships), naming the ledger sequence of
// every event and the controller of the notice.
func TestConsentRecordsISO27560(t *testing.T) {
	h := start(t)
	em := h.emitter()
	s := "user-27560"
	h.mustAppend(em, h.ev("privacy.notice.published", "notice-27560", "", map[string]any{
		"version": "1.0", "effective": "2026-01-01T00:00:00Z", "language": "zh-CN",
		"controller": map[string]any{"name": "Shop Example Ltd.", "contact": "privacy@shop.example"},
	}))
	h.mustAppend(em, h.ev("privacy.subject.registered", "reg-27560", s, map[string]any{"residence": "CN", "age": 30}))
	g1 := h.consent(em, s, "c-kept", map[string]any{"destinations": []string{"SG"}}).seq()
	g2 := h.consent(em, s, "c-gone", map[string]any{"purposes": []string{"notifications"}}).seq()
	w := h.mustAppend(em, h.ev("privacy.consent.withdrawn", "wd-27560", s, map[string]any{"consent_id": "c-gone"})).seq()
	if g1 == 0 || g2 == 0 || w == 0 {
		t.Fatalf("sequences %d %d %d", g1, g2, w)
	}

	res, err := http.Get(h.app.URL + "/v1/subjects/" + s + "/consents?format=iso27560")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("without a token: %d, want 401", res.StatusCode)
	}
	raw, err := h.auditor().GetText(context.Background(), "/v1/subjects/"+s+"/consents?format=iso27560")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Context string `json:"@context"`
		Records []struct {
			Identifier     string `json:"identifier"`
			ConformsTo     string `json:"conformsTo"`
			ConsentStatus  string `json:"consentStatus"`
			DataController struct {
				Name string `json:"name"`
			} `json:"dataController"`
			Notice struct {
				Language string `json:"language"`
			} `json:"notice"`
			Process struct {
				Purpose             []string `json:"purpose"`
				TransferDestination []string `json:"transferDestination"`
			} `json:"process"`
			Events []struct {
				Type           string `json:"@type"`
				LedgerSequence uint64 `json:"ledgerSequence"`
			} `json:"events"`
		} `json:"records"`
	}
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Context != consentrecord.ContextURL || len(doc.Records) != 2 {
		t.Fatalf("context %q, %d records; want the shipped context and 2 records:\n%s", doc.Context, len(doc.Records), raw)
	}
	kept, gone := doc.Records[0], doc.Records[1]
	if kept.Identifier != "c-kept" || kept.ConsentStatus != "dpv:ConsentGiven" || gone.Identifier != "c-gone" || gone.ConsentStatus != "dpv:ConsentWithdrawn" {
		t.Errorf("records %s %s, %s %s", kept.Identifier, kept.ConsentStatus, gone.Identifier, gone.ConsentStatus)
	}
	if kept.ConformsTo != consentrecord.Profile || kept.DataController.Name != "Shop Example Ltd." || kept.Notice.Language != "zh-CN" {
		t.Errorf("header: %s, controller %q, language %q", kept.ConformsTo, kept.DataController.Name, kept.Notice.Language)
	}
	if strings.Join(kept.Process.TransferDestination, ",") != "loc:SG" || !strings.Contains(strings.Join(gone.Process.Purpose, ","), "dpv:CommunicationManagement") {
		t.Errorf("processing: %v %v", kept.Process.TransferDestination, gone.Process.Purpose)
	}
	seqs := func(evs []struct {
		Type           string `json:"@type"`
		LedgerSequence uint64 `json:"ledgerSequence"`
	}) string {
		var b strings.Builder
		for _, e := range evs {
			b.WriteString(e.Type + "@" + itoa(e.LedgerSequence) + " ")
		}
		return b.String()
	}
	if got, want := seqs(kept.Events), "dpv:ConsentGiven@"+itoa(g1)+" "; got != want {
		t.Errorf("events of c-kept: %s, want %s", got, want)
	}
	if got, want := seqs(gone.Events), "dpv:ConsentGiven@"+itoa(g2)+" dpv:ConsentWithdrawn@"+itoa(w)+" "; got != want {
		t.Errorf("events of c-gone: %s, want %s", got, want)
	}

	// Validate against the shipped context: every member of the records is
	// a term the context defines, as a JSON-LD processor sees it, and the
	// processor expands the whole document.
	var generic map[string]any
	if err := json.NewDecoder(bytes.NewReader([]byte(raw))).Decode(&generic); err != nil {
		t.Fatal(err)
	}
	opts := ld.NewJsonLdOptions("")
	opts.DocumentLoader = servedContextLoader{base: h.app.URL}
	proc := ld.NewJsonLdProcessor()
	expanded, err := proc.Expand(generic, opts)
	if err != nil {
		t.Fatalf("expanding the records with the shipped context: %v", err)
	}
	flat, _ := json.Marshal(expanded)
	for _, iri := range []string{"https://w3id.org/dpv#ConsentRecord", "https://w3id.org/dpv#hasConsentStatus",
		"https://w3id.org/dpv#ConsentWithdrawn", "https://custos.dev/ns/dpv#ledgerSequence", "https://w3id.org/dpv/loc#SG"} {
		if !bytes.Contains(flat, []byte(iri)) {
			t.Errorf("expanded records lack %s", iri)
		}
	}
	undefined := func(doc map[string]any) []string {
		var out []string
		for key, sample := range members(doc, map[string]any{}) {
			probe := map[string]any{"@context": consentrecord.ContextURL, "@id": "urn:probe", key: sample}
			got, err := proc.Expand(probe, opts)
			if err != nil {
				out = append(out, key+" ("+err.Error()+")")
				continue
			}
			if len(got) != 1 || len(got[0].(map[string]any)) < 2 {
				out = append(out, key)
			}
		}
		return out
	}
	if bad := undefined(generic); len(bad) > 0 {
		t.Errorf("members the shipped context does not define: %v", bad)
	}
	if bad := undefined(map[string]any{"undefinedTerm": "x"}); len(bad) != 1 {
		t.Errorf("an undefined term was taken as defined: %v", bad)
	}
}

// members collects every member name below v (JSON-LD keywords excepted)
// with one of its values.
func members(v any, into map[string]any) map[string]any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if !strings.HasPrefix(k, "@") {
				if _, seen := into[k]; !seen {
					into[k] = val
				}
			}
			members(val, into)
		}
	case []any:
		for _, e := range x {
			members(e, into)
		}
	}
	return into
}

func itoa(n uint64) string { b, _ := json.Marshal(n); return string(b) }
