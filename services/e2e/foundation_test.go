package e2e_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"custos.dev/ledger"
	"custos.dev/services/client"
)

// Every event type of the event contract (docs/schemas/) is accepted in a realistic order.
func TestEveryTypeAccepted(t *testing.T) {
	h := start(t)
	em := h.emitter()
	subj := "user-1001"
	cases := []map[string]any{
		h.ev("privacy.notice.published", "n-1", "", map[string]any{"version": "1.0", "effective": h.clock.Now().Format("2006-01-02T15:04:05Z07:00"), "changes": "first notice"}),
		h.ev("privacy.subject.registered", "r-1", subj, map[string]any{"residence": "CN", "birth_date": "1990-04-01"}),
		h.ev("privacy.consent.granted", "c-1", subj, map[string]any{
			"consent_id": "consent-1", "notice_version": "1.0",
			"purposes":     []string{"service_provision", "customer_support", "service_improvement"},
			"categories":   []string{"identity.contact", "identity.basic", "usage.behavior", "cookie.analytics"},
			"destinations": []string{"SG"}, "recipients": []string{"acme-sg"}, "cookies": []string{"cookie.analytics"},
			"method": "web_form",
		}),
		h.ev("privacy.data.collected", "d-1", subj, map[string]any{
			"categories": []string{"identity.contact"}, "purpose": "service_provision", "storage_region": "CN",
			"retention": "P2Y", "fields": map[string]any{"email": "lin.wei@example.cn", "phone": "+86 138 0013 8000"},
		}),
		h.ev("privacy.data.used", "u-1", subj, map[string]any{"categories": []string{"usage.behavior"}, "purpose": "service_improvement"}),
		h.ev("privacy.data.shared", "s-1", subj, map[string]any{
			"recipient": "courier-cn", "recipient_kind": "service_provider", "basis": "service_provider",
			"categories": []string{"identity.contact"}, "purpose": "service_provision", "region": "CN",
		}),
		h.ev("privacy.data.transferred", "t-1", subj, map[string]any{
			"transfer_id": "tr-1", "recipient": "acme-sg", "from_region": "CN", "to_region": "SG",
			"categories": []string{"identity.contact"}, "purpose": "customer_support", "mechanism": "standard_contract",
		}),
		h.ev("privacy.rights.requested", "q-1", subj, map[string]any{"request_id": "req-1", "right": "access", "details": "please send me my data"}),
		h.ev("privacy.rights.completed", "q-2", subj, map[string]any{"request_id": "req-1", "outcome": "fulfilled"}),
		h.ev("privacy.data.corrected", "x-1", subj, map[string]any{"categories": []string{"identity.contact"}, "fields": map[string]any{"phone": "+86 139 0000 0000"}}),
		h.ev("privacy.consent.withdrawn", "w-1", subj, map[string]any{"purposes": []string{"service_improvement"}}),
		h.ev("privacy.data.erased", "e-1", subj, map[string]any{"scope": []string{"usage.behavior"}, "reason": "withdrawal"}),
	}
	seen := map[string]bool{}
	for _, e := range cases {
		r := h.mustAppend(em, e)
		if r.seq() == 0 || r.Body["leaf_hash"] == "" {
			t.Fatalf("%s: receipt %s", e["type"], r.Raw)
		}
		seen[e["type"].(string)] = true
	}
	if len(seen) != 12 {
		t.Fatalf("covered %d types, want 12", len(seen))
	}
}

// Each class of bad input is refused with the field named, and nothing is
// appended.
func TestBadInputRefusedWithField(t *testing.T) {
	h := start(t)
	em := h.emitter()
	h.register(em, "user-7", "reg-7", 30)
	before := h.streamLen()
	good := func() map[string]any {
		return h.transfer("user-7", uniq("tr"), "SG", "standard_contract")
	}
	set := func(path string, v any) map[string]any {
		e := good()
		if strings.HasPrefix(path, "data.") {
			d := e["data"].(map[string]any)
			if v == nil {
				delete(d, strings.TrimPrefix(path, "data."))
			} else {
				d[strings.TrimPrefix(path, "data.")] = v
			}
		} else if v == nil {
			delete(e, path)
		} else {
			e[path] = v
		}
		return e
	}
	cases := []struct {
		name  string
		event map[string]any
		field string
	}{
		{"unknown type", set("type", "privacy.data.teleported"), "type"},
		{"custos type", set("type", "custos.key.destroyed"), "type"},
		{"missing subject", set("subject", nil), "subject"},
		{"wrong specversion", set("specversion", "0.3"), "specversion"},
		{"bad time", set("time", "yesterday"), "time"},
		{"time far in future", set("time", h.clock.Now().AddDate(0, 0, 3).Format("2006-01-02T15:04:05Z")), "time"},
		{"unknown envelope field", set("colour", "blue"), "colour"},
		{"misspelt data field", set("data.recipeint", "x"), "data.recipeint"},
		{"wrong JSON type", set("data.categories", "identity.contact"), "data.categories"},
		{"unknown category", set("data.categories", []string{"identity.shoe_size"}), "data.categories[0]"},
		{"unknown purpose", set("data.purpose", "marketing"), "data.purpose"},
		{"bad region", set("data.to_region", "ZZ"), "data.to_region"},
		{"lower-case region", set("data.to_region", "sg"), "data.to_region"},
		{"bad mechanism", set("data.mechanism", "handshake"), "data.mechanism"},
		{"missing required", set("data.recipient", nil), "data.recipient"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := h.post(em, c.event)
			if r.Status != http.StatusBadRequest || r.errCode() != "invalid_event" || r.errField() != c.field {
				t.Fatalf("got %d %s; want 400 invalid_event field %s", r.Status, r.Raw, c.field)
			}
		})
	}
	// Bad durations and dates on other types.
	coll := h.ev("privacy.data.collected", "bad-dur", "user-7", map[string]any{"categories": []string{"identity.contact"}, "purpose": "service_provision", "storage_region": "CN", "retention": "two years"})
	if r := h.post(em, coll); r.Status != 400 || r.errField() != "data.retention" {
		t.Fatalf("bad duration: %d %s", r.Status, r.Raw)
	}
	// Media type, size and JSON syntax.
	if r := h.send(em, "text/plain", []byte(`{}`)); r.Status != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain: %d %s", r.Status, r.Raw)
	}
	big := `{"specversion":"1.0","data":"` + strings.Repeat("x", 1<<20+10) + `"}`
	if r := h.send(em, "application/cloudevents+json", []byte(big)); r.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized: %d", r.Status)
	}
	if r := h.send(em, "application/cloudevents+json", []byte(`{"specversion":`)); r.Status != http.StatusBadRequest {
		t.Fatalf("truncated JSON: %d %s", r.Status, r.Raw)
	}
	if got := h.streamLen(); got != before {
		t.Fatalf("stream grew from %d to %d on bad input", before, got)
	}
}

func TestIdempotentResend(t *testing.T) {
	h := start(t)
	em := h.emitter()
	e := h.ev("privacy.subject.registered", "reg-once", "user-9", map[string]any{"residence": "CN", "age": 40})
	first := h.mustAppend(em, e)
	before := h.streamLen()
	again := h.post(em, e)
	if again.Status != http.StatusOK || again.seq() != first.seq() || again.Body["leaf_hash"] != first.Body["leaf_hash"] {
		t.Fatalf("re-send: got %d %s, want 200 with seq %d", again.Status, again.Raw, first.seq())
	}
	e["data"].(map[string]any)["age"] = 41
	if r := h.post(em, e); r.Status != http.StatusConflict || r.errCode() != "duplicate_id_conflict" {
		t.Fatalf("changed content: %d %s", r.Status, r.Raw)
	}
	if got := h.streamLen(); got != before {
		t.Fatalf("stream grew from %d to %d on re-send", before, got)
	}
	// After a restart the index is rebuilt from the stream, so the same
	// holds beyond JetStream's duplicates window.
	h.restart()
	em = h.emitter()
	e["data"].(map[string]any)["age"] = 40
	if r := h.post(em, e); r.Status != http.StatusOK || r.seq() != first.seq() {
		t.Fatalf("re-send after restart: %d %s", r.Status, r.Raw)
	}
}

// The ledger stream refuses deletes and purges through the JetStream API,
// and Custos refuses to start on a stream with weaker settings.
func TestStreamHardened(t *testing.T) {
	h := start(t)
	em := h.emitter()
	h.register(em, "user-h", "reg-h", 30)
	js, err := jetstream.New(h.app.Conn())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := js.Stream(ctx, ledger.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(ctx, 1); err == nil {
		t.Fatal("delete of a ledger message succeeded")
	}
	if err := s.Purge(ctx); err == nil {
		t.Fatal("purge of the ledger succeeded")
	}
	if err := js.DeleteStream(ctx, ledger.StreamName); err == nil {
		t.Fatal("delete of the ledger stream succeeded")
	}
	cfg := s.CachedInfo().Config
	if !cfg.DenyDelete || !cfg.DenyPurge || cfg.AllowRollup || cfg.Discard != jetstream.DiscardNew || cfg.Storage != jetstream.FileStorage || cfg.Duplicates == 0 {
		t.Fatalf("weak stream config: %+v", cfg)
	}
	weak := cfg
	weak.DenyPurge = false
	if err := ledger.CheckStreamConfig(weak, cfg); err == nil || !strings.Contains(err.Error(), "deny_purge") {
		t.Fatalf("weak config not named: %v", err)
	}
	if got := h.streamLen(); got < 2 {
		t.Fatalf("stream has %d messages", got)
	}
}

// A restart on the same data directory keeps every acknowledged event and
// the same tree.
func TestRestartKeepsEvents(t *testing.T) {
	h := start(t)
	em := h.emitter()
	var seqs []uint64
	for i := 0; i < 20; i++ {
		seqs = append(seqs, h.mustAppend(em, h.ev("privacy.subject.registered", uniq("reg"), uniq("user"), map[string]any{"residence": "CN", "age": 30})).seq())
	}
	n := h.streamLen()
	h.waitCheckpoint(int64(n))
	root, _ := h.app.Ledger.Tree().Root(int64(n))
	h.restart()
	if got := h.streamLen(); got != n {
		t.Fatalf("after restart %d messages, want %d", got, n)
	}
	if root2, _ := h.app.Ledger.Tree().Root(int64(n)); root2 != root {
		t.Fatal("tree root changed across restart")
	}
	au := h.auditor()
	count := 0
	err := au.Replay(context.Background(), nil, func(l client.ReplayLine) error {
		count++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if uint64(count) != n {
		t.Fatalf("replayed %d, want %d", count, n)
	}
}

// The stored bytes of the stream, every file under DATA, and the NATS
// subjects never carry a subject identifier or a personal value.
func TestNoClearSubjectInStream(t *testing.T) {
	h := start(t)
	em := h.emitter()
	const subj, email, name = "subject-ZX81-unique", "zhang.san.unique@example.cn", "Zhang Unique-San"
	h.register(em, subj, "reg-zx", 25)
	h.consent(em, subj, "cz", nil)
	h.mustAppend(em, h.ev("privacy.data.collected", "col-zx", subj, map[string]any{
		"categories": []string{"identity.contact", "identity.basic"}, "purpose": "service_provision", "storage_region": "CN",
		"retention": "P1Y", "fields": map[string]any{"email": email, "name": name},
	}))
	h.waitMirror()
	creds := h.app.NATSServer().Auditor
	nc, err := creds.Connect("test-auditor")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	err = ledger.NewReader(js).Replay(context.Background(), ledger.Filter{}, func(e ledger.Entry) error {
		for _, needle := range []string{subj, email, name} {
			if strings.Contains(string(e.Body), needle) || strings.Contains(e.Subject, needle) {
				t.Errorf("seq %d carries %q in clear", e.Seq, needle)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	h.down()
	scanDir(t, h.dir, subj, email, name)
	if strings.Contains(h.logs.String(), email) || strings.Contains(h.logs.String(), subj) {
		t.Error("logs carry personal data")
	}
}
