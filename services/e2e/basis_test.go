package e2e_test

import (
	"context"
	"testing"
)

// The built-in policy set lets the platform do its ordinary work on the
// lawful basis the privacy policy gives it, and still refuses what the policy
// reserves to consent, over the API a platform service uses.
func TestLawfulBasesOverHTTP(t *testing.T) {
	h := start(t)
	em := h.emitter()
	resident := func(subject, id, residence string, age int) {
		h.mustAppend(em, h.ev("privacy.subject.registered", id, subject, map[string]any{"residence": residence, "age": age}))
	}
	collect := func(subject, id string, cats []string, region string) map[string]any {
		return h.ev("privacy.data.collected", id, subject, map[string]any{
			"categories": cats, "purpose": "service_provision", "storage_region": region, "retention": "P1Y",
		})
	}
	transfer := func(subject, id, from, to, mechanism string) map[string]any {
		data := map[string]any{"transfer_id": id, "recipient": "acme", "from_region": from, "to_region": to,
			"categories": []string{"identity.account"}, "purpose": "service_provision"}
		if mechanism != "" {
			data["mechanism"] = mechanism
		}
		return h.ev("privacy.data.transferred", id, subject, data)
	}
	basis := func(r resp) string {
		d, _ := r.Body["decision"].(map[string]any)
		b, _ := d["basis"].(string)
		g, _ := d["transfer_ground"].(string)
		return b + "/" + g
	}

	resident("user-cn", "reg-cn", "CN", 30)
	if got := basis(h.mustAppend(em, collect("user-cn", "col-account", []string{"identity.account", "identity.contact"}, "CN"))); got != "contract/" {
		t.Errorf("account and contact data for the service: basis %q, want contract", got)
	}
	if got := basis(h.mustAppend(em, collect("user-cn", "col-cookies", []string{"cookie.session", "cookie.security"}, "CN"))); got != "contract/" {
		t.Errorf("necessary cookies: basis %q, want contract", got)
	}
	h.mustDeny(em, collect("user-cn", "col-pref", []string{"cookie.preference"}, "CN"), "COOKIE_CONSENT_REQUIRED")
	h.mustDeny(em, collect("user-cn", "col-analytics", []string{"cookie.analytics"}, "CN"), "COOKIE_CONSENT_REQUIRED")
	h.mustDeny(em, collect("user-cn", "col-abroad", []string{"identity.account"}, "SG"), "NO_SEPARATE_CONSENT")

	resident("user-minor", "reg-minor", "CN", 15)
	r := h.mustDeny(em, collect("user-minor", "col-minor", []string{"identity.account"}, "CN"), "GUARDIAN_CONSENT_REQUIRED")
	if got := r.reasons(); len(got) != 1 {
		t.Errorf("a minor's collection without guardian consent: reasons %v, want GUARDIAN_CONSENT_REQUIRED alone", got)
	}

	resident("user-eea", "reg-eea", "DE", 30)
	if got := basis(h.mustAppend(em, transfer("user-eea", "tr-jp", "DE", "JP", ""))); got != "contract/adequacy_decision" {
		t.Errorf("EEA resident to an adequate country: %q", got)
	}
	if got := basis(h.mustAppend(em, transfer("user-eea", "tr-scc", "DE", "US", "standard_contractual_clauses"))); got != "contract/appropriate_safeguards" {
		t.Errorf("EEA resident under SCCs: %q", got)
	}
	h.mustDeny(em, transfer("user-eea", "tr-none", "DE", "US", ""), "NO_TRANSFER_GROUND")

	// The basis is on the ledger and so in the register and the subject's state.
	var reg struct {
		Transfers []struct {
			TransferID     string `json:"transfer_id"`
			Basis          string `json:"basis"`
			TransferGround string `json:"transfer_ground"`
		} `json:"transfers"`
	}
	if err := h.auditor().GetJSON(context.Background(), "/v1/transfers", nil, &reg); err != nil {
		t.Fatal(err)
	}
	grounds := map[string]string{}
	for _, e := range reg.Transfers {
		grounds[e.TransferID] = e.Basis + "/" + e.TransferGround
	}
	for id, want := range map[string]string{"tr-jp": "contract/adequacy_decision", "tr-scc": "contract/appropriate_safeguards", "tr-none": "/"} {
		if grounds[id] != want {
			t.Errorf("register entry %s: %q, want %q", id, grounds[id], want)
		}
	}
}
