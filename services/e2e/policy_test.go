package e2e_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"custos.dev/ledger"
	"custos.dev/ledger/record"
	"custos.dev/services/app"
)

// deniedRecord reads the recorded denial at seq and checks it names the
// attempted event and the reason, without personal values.
func (h *harness) deniedRecord(seq uint64, wantType, wantCode string) {
	h.t.Helper()
	_, body, err := h.app.Ledger.GetRecord(context.Background(), seq)
	if err != nil {
		h.t.Fatalf("read denial %d: %v", seq, err)
	}
	r, err := record.Unmarshal(body)
	if err != nil || r.Type != record.TypeDenied {
		h.t.Fatalf("seq %d is %v (%v), want a denial", seq, r, err)
	}
	var d record.Denied
	if err := json.Unmarshal(r.Data, &d); err != nil {
		h.t.Fatal(err)
	}
	found := false
	for _, rs := range d.Decision.Reasons {
		found = found || rs.Code == wantCode
	}
	if d.Type != wantType || !found || d.Digest == "" {
		h.t.Fatalf("denial at %d: %+v, want %s with %s", seq, d, wantType, wantCode)
	}
}

// Each transfer rule's allow and deny case over HTTP, each denial recorded.
func TestTransferRules(t *testing.T) {
	h := start(t)
	em := h.emitter()
	s := "user-tr"
	h.register(em, s, "reg-tr", 30)

	r := h.mustDeny(em, h.transfer(s, "t1", "SG", "standard_contract"), "NO_SEPARATE_CONSENT")
	h.deniedRecord(r.seq(), "privacy.data.transferred", "NO_SEPARATE_CONSENT")

	h.consent(em, s, "c-sg", map[string]any{"destinations": []string{"SG", "US"}, "recipients": []string{"acme-sg"}})
	h.mustAppend(em, h.transfer(s, "t2", "SG", "standard_contract"))

	r = h.mustDeny(em, h.transfer(s, "t3", "US", "standard_contract"), "DESTINATION_NOT_ALLOWED")
	h.deniedRecord(r.seq(), "privacy.data.transferred", "DESTINATION_NOT_ALLOWED")
	h.mustDeny(em, h.transfer(s, "t4", "SG", ""), "NO_TRANSFER_MECHANISM")

	other := h.transfer(s, "t5", "SG", "standard_contract")
	other["data"].(map[string]any)["recipient"] = "other-corp"
	h.mustDeny(em, other, "RECIPIENT_NOT_CONSENTED")

	cat := h.transfer(s, "t6", "SG", "standard_contract")
	cat["data"].(map[string]any)["categories"] = []string{"usage.behavior"}
	h.mustDeny(em, cat, "CATEGORY_NOT_CONSENTED")

	pur := h.transfer(s, "t7", "SG", "standard_contract")
	pur["data"].(map[string]any)["purpose"] = "service_improvement"
	h.mustDeny(em, pur, "PURPOSE_NOT_CONSENTED")

	// Domestic transfer to an affiliate needs no separate consent.
	dom := h.transfer(s, "t8", "CN", "")
	dom["data"].(map[string]any)["recipient"] = "affiliate-sh"
	h.mustAppend(em, dom)

	// Withdrawal by destination blocks the next transfer at once.
	h.mustAppend(em, h.ev("privacy.consent.withdrawn", "w-sg", s, map[string]any{"destinations": []string{"SG"}}))
	h.mustDeny(em, h.transfer(s, "t9", "SG", "standard_contract"), "CONSENT_WITHDRAWN")
}

func TestConsentExpiryAndMinors(t *testing.T) {
	h := start(t)
	em := h.emitter()
	s := "user-exp"
	h.register(em, s, "reg-exp", 30)
	h.consent(em, s, "c-exp", map[string]any{"destinations": []string{"SG"}, "expires": h.clock.Now().Add(time.Hour).Format(time.RFC3339)})
	h.mustAppend(em, h.transfer(s, "e1", "SG", "security_assessment"))
	h.clock.Advance(2 * time.Hour)
	h.mustDeny(em, h.transfer(s, "e2", "SG", "security_assessment"), "CONSENT_EXPIRED")

	kid := "user-kid"
	h.register(em, kid, "reg-kid", 15)
	consent := h.ev("privacy.consent.granted", "c-kid", kid, map[string]any{
		"consent_id": "ck", "notice_version": "1.0", "purposes": []string{"service_provision"}, "categories": []string{"identity.contact"},
	})
	h.mustDeny(em, consent, "GUARDIAN_CONSENT_REQUIRED")
	consent["id"] = "c-kid-2"
	consent["data"].(map[string]any)["guardian"] = map[string]any{"ref": "parent-77", "relation": "mother"}
	h.mustAppend(em, consent)
	h.mustAppend(em, h.ev("privacy.data.collected", "kid-col", kid, map[string]any{
		"categories": []string{"identity.contact"}, "purpose": "service_provision", "storage_region": "CN", "retention": "P30D",
	}))
}

func TestCollectionAndSharingRules(t *testing.T) {
	h := start(t)
	em := h.emitter()
	s := "user-col"
	h.register(em, s, "reg-col", 40)
	coll := func(id string, cats []string, region string) map[string]any {
		return h.ev("privacy.data.collected", id, s, map[string]any{"categories": cats, "purpose": "service_provision", "storage_region": region, "retention": "P1Y"})
	}
	h.mustDeny(em, coll("col-1", []string{"usage.behavior"}, "CN"), "PURPOSE_NOT_CONSENTED")
	h.consent(em, s, "c-col", nil)
	h.mustAppend(em, coll("col-2", []string{"usage.device"}, "CN"))
	h.mustDeny(em, coll("col-2b", []string{"usage.behavior"}, "CN"), "CATEGORY_NOT_CONSENTED")
	h.mustDeny(em, coll("col-3", []string{"identity.contact"}, "US"), "STORAGE_REGION_NOT_ALLOWED")
	h.mustDeny(em, coll("col-4", []string{"cookie.analytics"}, "CN"), "COOKIE_CONSENT_REQUIRED")
	h.mustAppend(em, coll("col-5", []string{"cookie.session"}, "CN"))

	share := func(id, kind, basis string) map[string]any {
		return h.ev("privacy.data.shared", id, s, map[string]any{"recipient": "partner", "recipient_kind": kind, "basis": basis,
			"categories": []string{"identity.contact"}, "purpose": "service_provision", "region": "CN"})
	}
	h.mustAppend(em, share("sh-1", "service_provider", "service_provider"))
	h.mustDeny(em, share("sh-2", "third_party", "service_provider"), "SHARING_BASIS_INVALID")
	h.mustAppend(em, share("sh-3", "authority", "legal_obligation"))
	h.mustAppend(em, share("sh-4", "third_party", "anonymized"))
}

// Read-your-writes: a grant acknowledged before a transfer is in force for
// it; a withdrawal acknowledged before is too. Concurrent transfers racing
// a withdrawal are never appended after it as allowed.
func TestReadYourWritesConcurrent(t *testing.T) {
	h := start(t)
	em := h.emitter()
	s := "user-race"
	h.register(em, s, "reg-race", 30)
	h.consent(em, s, "c-race", map[string]any{"destinations": []string{"SG"}})
	h.mustAppend(em, h.transfer(s, "ok-1", "SG", "standard_contract"))

	var wg sync.WaitGroup
	results := make(chan resp, 40)
	var withdrawal resp
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results <- h.post(em, h.transfer(s, uniq("race"), "SG", "standard_contract"))
		}(i)
		if i == 20 {
			withdrawal = h.mustAppend(em, h.ev("privacy.consent.withdrawn", "w-race", s, map[string]any{"consent_id": "c-race"}))
		}
	}
	wg.Wait()
	close(results)
	wseq := withdrawal.seq()
	allowedAfter := 0
	for r := range results {
		if r.Status == http.StatusCreated && r.seq() > wseq {
			allowedAfter++
		}
		if r.Status != http.StatusCreated && r.Status != http.StatusForbidden {
			t.Fatalf("unexpected answer %d %s", r.Status, r.Raw)
		}
	}
	if allowedAfter != 0 {
		t.Fatalf("%d transfers were appended as allowed after the withdrawal at %d", allowedAfter, wseq)
	}
	h.mustDeny(em, h.transfer(s, "after", "SG", "standard_contract"), "CONSENT_WITHDRAWN")
}

// Two Custos processes on one NATS: a withdrawal through one is in force
// for the next decision through the other.
func TestReadYourWritesAcrossProcesses(t *testing.T) {
	h := start(t)
	em := h.emitter()
	s := "user-two"
	h.register(em, s, "reg-two", 30)
	h.consent(em, s, "c-two", map[string]any{"destinations": []string{"SG"}})
	creds := filepath.Join(h.dir, "nats-custos.json")
	second, err := app.Start(context.Background(), app.Config{
		DataDir: t.TempDir(), Listen: "127.0.0.1:0", NATSURL: h.app.NATSURL, NATSCreds: creds,
		VaultAddr: h.app.VaultURL, VaultToken: h.app.KeyServer().RootToken(), Clock: h.clock.Now,
		CheckpointInterval: time.Hour, RetentionInterval: time.Hour, RatePerToken: 100000,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close(context.Background())
	other := h.emitter()
	other.BaseURL = second.URL
	// The second process's follower may lag; its conditional append must
	// still see the withdrawal made through the first.
	h.mustAppend(em, h.ev("privacy.consent.withdrawn", "w-two", s, map[string]any{"consent_id": "c-two"}))
	h.mustDeny(other, h.transfer(s, "two-1", "SG", "standard_contract"), "CONSENT_WITHDRAWN")
	// And a grant through the second is in force through the first.
	h.consent(other, s, "c-two-b", map[string]any{"destinations": []string{"SG"}})
	h.mustAppend(em, h.transfer(s, "two-2", "SG", "standard_contract"))
}

func TestDecisionEndpointAppendsNothing(t *testing.T) {
	h := start(t)
	em := h.emitter()
	h.register(em, "user-d", "reg-d", 30)
	before := h.streamLen()
	b, _ := json.Marshal(h.transfer("user-d", "probe", "SG", "standard_contract"))
	resp, err := em.Do(context.Background(), http.MethodPost, "/v1/decisions", nil, b, "application/cloudevents+json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct {
		Allow   bool `json:"allow"`
		Reasons []struct {
			Code string `json:"code"`
		} `json:"reasons"`
		Revision string `json:"policy_revision"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	if d.Allow || len(d.Reasons) == 0 || d.Reasons[0].Code == "" || d.Revision == "" {
		t.Fatalf("decision %+v", d)
	}
	if got := h.streamLen(); got != before {
		t.Fatalf("decision appended: %d -> %d", before, got)
	}
}

// A policy directory is hot-reloaded; a broken one does not replace the
// active set, and an accepted one is announced on the ledger.
func TestPolicyHotReload(t *testing.T) {
	dir := t.TempDir()
	copyDir(t, "../../policies", dir)
	h := start(t, func(c *app.Config) { c.PoliciesDir = dir; c.PolicyPoll = 20 * time.Millisecond })
	rev := h.app.Engine.Active().Revision()

	// Broken Rego: refused, the old set stays, /readyz says why.
	if err := os.WriteFile(filepath.Join(dir, "broken.rego"), []byte("package custos.decision\nthis is not rego"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "refusal on /readyz", func() bool {
		var body map[string]any
		resp, err := h.readyz(true)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(&body)
		c, _ := body["checks"].(map[string]any)["policy"].(map[string]any)
		d, _ := c["detail"].(string)
		return len(d) > len(rev)
	})
	if h.app.Engine.Active().Revision() != rev {
		t.Fatal("a broken policy set replaced the active one")
	}
	os.Remove(filepath.Join(dir, "broken.rego"))

	// A data change (allow US) is accepted and recorded.
	cfgPath := findConfig(t, dir)
	b, _ := os.ReadFile(cfgPath)
	var cfg map[string]any
	_ = json.Unmarshal(b, &cfg)
	cfg["transfer_destinations"] = append(cfg["transfer_destinations"].([]any), "US")
	nb, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(cfgPath, nb, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "new revision recorded", func() bool {
		return h.app.Engine.Active().Revision() != rev && h.app.Ledger.View().PolicyRevision() == h.app.Engine.Active().Revision()
	})
	em := h.emitter()
	s := "user-us"
	h.register(em, s, "reg-us", 30)
	h.consent(em, s, "c-us", map[string]any{"destinations": []string{"US"}})
	h.mustAppend(em, h.transfer(s, "us-1", "US", "certification"))
	var activations int
	_ = ledger.NewReader(h.app.Ledger.JetStream()).Replay(context.Background(), ledger.Filter{Type: record.TypePolicyActivated}, func(ledger.Entry) error {
		activations++
		return nil
	})
	if activations < 2 {
		t.Fatalf("%d policy activations recorded, want startup and reload", activations)
	}
}
