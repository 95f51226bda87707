package e2e_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"custos.dev/ledger"
	"custos.dev/ledger/record"
)

type rightsList struct {
	Requests []struct {
		RequestID string    `json:"request_id"`
		Right     string    `json:"right"`
		Status    string    `json:"status"`
		Deadline  time.Time `json:"deadline"`
		Overdue   bool      `json:"overdue"`
	} `json:"requests"`
}

func (h *harness) rights(status string) rightsList {
	h.t.Helper()
	var out rightsList
	if err := h.auditorC().GetJSON(context.Background(), "/v1/rights", url.Values{"status": {status}}, &out); err != nil {
		h.t.Fatal(err)
	}
	return out
}

// auditorC is a cached auditor client.
func (h *harness) auditorC() *clientT {
	if h.aud == nil || h.aud.BaseURL != h.app.URL {
		h.aud = h.auditor()
	}
	return h.aud
}

// Every right from request to completion over HTTP, with deadlines from
// the policy data (PIPL: 15 days for a CN resident, GDPR: 30 for DE) and
// overdue detection by the injected clock.
func TestRightsLifecycle(t *testing.T) {
	h := start(t)
	em := h.emitter()
	cn, de := "user-rights-cn", "user-rights-de"
	h.register(em, cn, "reg-rcn", 30)
	h.mustAppend(em, h.ev("privacy.subject.registered", "reg-rde", de, map[string]any{"residence": "DE", "age": 30}))
	rights := []string{"access", "correction", "deletion", "withdrawal", "portability", "complaint"}
	for _, r := range rights {
		h.mustAppend(em, h.ev("privacy.rights.requested", "rq-"+r, cn, map[string]any{"request_id": "cn-" + r, "right": r, "details": "by email"}))
	}
	h.mustAppend(em, h.ev("privacy.rights.requested", "rq-de", de, map[string]any{"request_id": "de-access", "right": "access"}))
	if got := len(h.rights("open").Requests); got != 7 {
		t.Fatalf("%d open requests, want 7", got)
	}
	for _, q := range h.rights("open").Requests {
		want := 15 * 24 * time.Hour
		if q.RequestID == "de-access" {
			want = 30 * 24 * time.Hour
		}
		if d := q.Deadline.Sub(h.clock.Now()); d != want {
			t.Fatalf("%s: deadline in %v, want %v", q.RequestID, d, want)
		}
	}
	// Close all but two CN requests, then let 16 days pass.
	for _, r := range rights[:4] {
		outcome := "fulfilled"
		if r == "correction" {
			outcome = "rejected"
		}
		h.mustAppend(em, h.ev("privacy.rights.completed", "rc-"+r, cn, map[string]any{"request_id": "cn-" + r, "outcome": outcome, "reason": "handled"}))
	}
	if got := len(h.rights("overdue").Requests); got != 0 {
		t.Fatalf("%d overdue before the deadline", got)
	}
	h.clock.Advance(16 * 24 * time.Hour)
	over := h.rights("overdue").Requests
	if len(over) != 2 || over[0].RequestID != "cn-portability" || over[1].RequestID != "cn-complaint" {
		t.Fatalf("overdue: %+v", over)
	}
	metrics, err := h.admin.GetText(context.Background(), "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(metrics), "custos_rights_requests_overdue 2") {
		t.Fatal("overdue metric does not say 2")
	}
	// The CLI lists them too, flagged.
	code, out, _ := run(t, map[string]string{"CUSTOS_TOKEN": h.auditorC().Token}, "rights", "--server", h.app.URL, "--status", "overdue")
	if code != 0 || strings.Count(out, "OVERDUE") != 3 { // the header and two rows
		t.Fatalf("custos rights: %d\n%s", code, out)
	}
	h.mustAppend(em, h.ev("privacy.rights.completed", "rc-late", cn, map[string]any{"request_id": "cn-portability", "outcome": "fulfilled"}))
	if got := len(h.rights("overdue").Requests); got != 1 {
		t.Fatalf("%d overdue after completing one", got)
	}
	if got := len(h.rights("closed").Requests); got != 5 {
		t.Fatalf("%d closed, want 5", got)
	}
}

type exportDoc struct {
	Erased        bool                       `json:"erased"`
	CurrentValues map[string]json.RawMessage `json:"current_values"`
	ErasedFields  []string                   `json:"erased_fields"`
	Collections   []json.RawMessage          `json:"collections"`
	Corrections   []json.RawMessage          `json:"corrections"`
	Consents      []json.RawMessage          `json:"consent_history"`
	Transfers     []json.RawMessage          `json:"transfers"`
	Events        []json.RawMessage          `json:"events"`
}

func (h *harness) exportDoc(subject string) exportDoc {
	h.t.Helper()
	var d exportDoc
	if err := json.Unmarshal(h.export(subject), &d); err != nil {
		h.t.Fatal(err)
	}
	return d
}

// Access and portability: the export holds every value and the history;
// a correction makes its values current while the history keeps both; an
// erasure of a category removes exactly its values.
func TestExportCorrectionErasure(t *testing.T) {
	h := start(t)
	em := h.emitter()
	s := "user-export"
	h.register(em, s, "reg-x", 30)
	h.consent(em, s, "c-x", map[string]any{"destinations": []string{"SG"}})
	h.mustAppend(em, h.ev("privacy.data.collected", "col-contact", s, map[string]any{
		"categories": []string{"identity.contact"}, "purpose": "service_provision", "storage_region": "CN", "retention": "P1Y",
		"fields": map[string]any{"email": "old@example.cn", "phone": "+86 10 1234 5678"},
	}))
	h.mustAppend(em, h.ev("privacy.data.collected", "col-device", s, map[string]any{
		"categories": []string{"usage.device"}, "purpose": "service_provision", "storage_region": "CN", "retention": "P1Y",
		"fields": map[string]any{"device_model": "Pixel 9"},
	}))
	h.mustAppend(em, h.transfer(s, "x-tr", "SG", "standard_contract"))
	d := h.exportDoc(s)
	if string(d.CurrentValues["email"]) == "" || !strings.Contains(string(d.CurrentValues["email"]), "old@example.cn") {
		t.Fatalf("export before correction: %+v", d.CurrentValues)
	}
	if len(d.Collections) != 2 || len(d.Transfers) != 1 || len(d.Consents) != 1 {
		t.Fatalf("export sections: %d collections, %d transfers, %d consents", len(d.Collections), len(d.Transfers), len(d.Consents))
	}
	h.mustAppend(em, h.ev("privacy.data.corrected", "cor-1", s, map[string]any{"categories": []string{"identity.contact"}, "fields": map[string]any{"email": "new@example.cn"}}))
	d = h.exportDoc(s)
	if !strings.Contains(string(d.CurrentValues["email"]), "new@example.cn") || len(d.Corrections) != 1 {
		t.Fatalf("export after correction: %+v", d.CurrentValues)
	}
	raw := string(h.export(s))
	if !strings.Contains(raw, "old@example.cn") {
		t.Fatal("the history lost the value before correction")
	}
	h.mustAppend(em, h.ev("privacy.data.erased", "er-contact", s, map[string]any{"scope": []string{"identity.contact"}, "reason": "request"}))
	d = h.exportDoc(s)
	raw = string(h.export(s))
	if strings.Contains(raw, "old@example.cn") || strings.Contains(raw, "new@example.cn") || strings.Contains(raw, "+86 10 1234 5678") {
		t.Fatal("erased contact values still exported")
	}
	if _, ok := d.CurrentValues["device_model"]; !ok || d.Erased {
		t.Fatalf("device values or subject wrongly erased: %+v", d)
	}
	if len(d.ErasedFields) != 2 {
		t.Fatalf("erased fields %v, want email and phone", d.ErasedFields)
	}
}

// Retention: collections past their period are erased by the worker, the
// expiry is recorded once, and only the expired categories go.
func TestRetentionExpiry(t *testing.T) {
	h := start(t)
	em := h.emitter()
	s := "user-ret"
	h.register(em, s, "reg-ret", 30)
	h.consent(em, s, "c-ret", nil)
	h.mustAppend(em, h.ev("privacy.data.collected", "col-short", s, map[string]any{
		"categories": []string{"identity.contact"}, "purpose": "service_provision", "storage_region": "CN", "retention": "P30D",
		"fields": map[string]any{"email": "short.lived@example.cn"},
	}))
	h.mustAppend(em, h.ev("privacy.data.collected", "col-long", s, map[string]any{
		"categories": []string{"usage.device"}, "purpose": "service_provision", "storage_region": "CN", "retention": "P1Y",
		"fields": map[string]any{"device_model": "Mate 70"},
	}))
	ctx := context.Background()
	if n, err := h.app.Ledger.RetentionOnce(ctx); err != nil || n != 0 {
		t.Fatalf("retention before the period: %d %v", n, err)
	}
	h.clock.Advance(31 * 24 * time.Hour)
	if n, err := h.app.Ledger.RetentionOnce(ctx); err != nil || n != 1 {
		t.Fatalf("retention after 31 days: %d %v, want 1", n, err)
	}
	if n, err := h.app.Ledger.RetentionOnce(ctx); err != nil || n != 0 {
		t.Fatalf("second pass: %d %v, want 0 (idempotent)", n, err)
	}
	d := h.exportDoc(s)
	if _, ok := d.CurrentValues["email"]; ok {
		t.Fatal("expired email still exported")
	}
	if _, ok := d.CurrentValues["device_model"]; !ok {
		t.Fatal("unexpired device model erased")
	}
	var st struct {
		Holdings []struct {
			Category string `json:"category"`
		} `json:"holdings"`
		Erased []string `json:"erased_categories"`
	}
	if err := h.auditorC().GetJSON(ctx, "/v1/subjects/"+s+"/state", nil, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Holdings) != 1 || st.Holdings[0].Category != "usage.device" || len(st.Erased) != 1 || st.Erased[0] != "identity.contact" {
		t.Fatalf("state after expiry: %+v", st)
	}
	count := func() int {
		n := 0
		_ = ledger.NewReader(h.app.Ledger.JetStream()).Replay(ctx, ledger.Filter{Type: record.TypeRetentionExpired}, func(ledger.Entry) error { n++; return nil })
		return n
	}
	if c := count(); c != 1 {
		t.Fatalf("%d retention records, want 1", c)
	}
	// Survives a restart: the expiry is not recorded again.
	h.restart()
	if n, err := h.app.Ledger.RetentionOnce(ctx); err != nil || n != 0 {
		t.Fatalf("after restart: %d %v", n, err)
	}
	if c := count(); c != 1 {
		t.Fatalf("%d retention records after restart, want 1", c)
	}
}
