package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"custos.dev/ledger/policy"
	"custos.dev/services/client"
)

// whatifReport is the part of `custos policy whatif -o json` the tests read.
type whatifReport struct {
	Mode        string `json:"mode"`
	Evaluated   int    `json:"evaluated"`
	Unchanged   int    `json:"unchanged"`
	AllowToDeny int    `json:"allow_to_deny"`
	DenyToAllow int    `json:"deny_to_allow"`
	ReasonsOnly int    `json:"reasons_changed_only"`
	Changes     []struct {
		Seq         uint64 `json:"seq"`
		Type        string `json:"type"`
		Destination string `json:"destination"`
		New         struct {
			Allow   bool     `json:"allow"`
			Reasons []string `json:"reasons"`
		} `json:"new"`
	} `json:"changes"`
	ByReason map[string]int `json:"changes_by_reason"`
}

// A security team's candidate that no longer allows Germany re-decides the
// recorded history: exactly the transfers to DE that were allowed become
// denials for DESTINATION_NOT_ALLOWED, nothing else changes, and whatif
// exits 1; the set as it is changes nothing (transfers allowed before a
// withdrawal stay allowed: each decision sees the state of its time) and
// exits 0. Neither touches the ledger or the active set.
func TestWhatIfOverHistory(t *testing.T) {
	h := start(t)
	em := h.emitter()
	const adults = 40
	for i := 0; i < adults; i++ {
		s := fmt.Sprintf("user-wi-%d", i)
		h.register(em, s, "reg-"+s, 30+i%20)
		h.consent(em, s, "c-"+s, map[string]any{"destinations": []string{"SG", "DE"}})
		h.mustAppend(em, h.transfer(s, "sg-"+s, "SG", "standard_contract"))
		h.mustAppend(em, h.transfer(s, "de-"+s, "DE", "standard_contract"))
		h.mustDeny(em, h.transfer(s, "us-"+s, "US", "standard_contract"), "DESTINATION_NOT_ALLOWED")
		if i < 5 {
			h.mustAppend(em, h.ev("privacy.consent.withdrawn", "wd-"+s, s, map[string]any{"consent_id": "c-" + s}))
			h.mustDeny(em, h.transfer(s, "sg2-"+s, "SG", "standard_contract"), "CONSENT_WITHDRAWN")
		}
	}
	for i := 0; i < 3; i++ {
		s := fmt.Sprintf("minor-wi-%d", i)
		h.register(em, s, "reg-"+s, 15)
		h.mustDeny(em, h.ev("privacy.data.collected", "col-"+s, s, map[string]any{
			"categories": []string{"identity.account"}, "purpose": "service_provision", "storage_region": "CN", "retention": "P1Y"}), "GUARDIAN_CONSENT_REQUIRED")
	}
	size, rev := h.streamLen(), h.app.Engine.Active().Revision()
	waitFor(t, "the tree to hold every record", func() bool { return uint64(h.app.Ledger.Tree().Size()) == size })
	treeSize := h.app.Ledger.Tree().Size()
	root, err := h.app.Ledger.Tree().Root(treeSize)
	if err != nil {
		t.Fatal(err)
	}

	same := t.TempDir()
	copyDir(t, "../../policies", same)
	noDE := t.TempDir()
	copyDir(t, "../../policies", noDE)
	cfgPath := findConfig(t, noDE)
	b, _ := os.ReadFile(cfgPath)
	var cfg map[string]any
	_ = json.Unmarshal(b, &cfg)
	var dests []any
	for _, d := range cfg["transfer_destinations"].([]any) {
		if d != "DE" {
			dests = append(dests, d)
		}
	}
	cfg["transfer_destinations"] = dests
	nb, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(cfgPath, nb, 0o644); err != nil {
		t.Fatal(err)
	}

	au := map[string]string{"CUSTOS_TOKEN": h.auditor().Token}
	whatif := func(dir string, extra ...string) (int, whatifReport) {
		t.Helper()
		args := append([]string{"policy", "whatif", dir, "--output", "json"}, extra...)
		code, out, errOut := run(t, au, args...)
		var rep whatifReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("whatif %s: exit %d, not a report: %v\n%s\n%s", dir, code, err, out, errOut)
		}
		return code, rep
	}

	code, rep := whatif(same, "--server", h.app.URL)
	if code != 0 || len(rep.Changes) != 0 || rep.Evaluated != 5*adults+5*2+3*2 || rep.Unchanged != rep.Evaluated || rep.Mode != "recorded-state" {
		t.Errorf("the unchanged set: exit %d, %d evaluated, %d unchanged, changes %+v", code, rep.Evaluated, rep.Unchanged, rep.Changes)
	}

	code, rep = whatif(noDE, "--nats-creds", filepath.Join(h.dir, "nats-auditor.json"))
	if code != 1 || rep.AllowToDeny != adults || rep.DenyToAllow != 0 || rep.ReasonsOnly != 0 || len(rep.Changes) != adults {
		t.Fatalf("without DE: exit %d, %d allow→deny, %d deny→allow, %d reasons only, %d changes; want %d DE transfers denied",
			code, rep.AllowToDeny, rep.DenyToAllow, rep.ReasonsOnly, len(rep.Changes), adults)
	}
	for _, c := range rep.Changes {
		if c.Type != "privacy.data.transferred" || c.Destination != "DE" || c.New.Allow || !slices.Contains(c.New.Reasons, "DESTINATION_NOT_ALLOWED") {
			t.Errorf("change at %d: %+v", c.Seq, c)
		}
	}
	if rep.ByReason["DESTINATION_NOT_ALLOWED"] != adults {
		t.Errorf("changes by reason %v", rep.ByReason)
	}
	// The candidate as a bundle file decides the same.
	noDEBundle := filepath.Join(t.TempDir(), "no-de.tar.gz")
	if code, out, errOut := run(t, nil, "policy", "build", noDE, "--out", noDEBundle, "--revision", "no-de"); code != 0 {
		t.Fatalf("policy build: %d %s %s", code, out, errOut)
	}
	if code, b := whatif(noDEBundle, "--server", h.app.URL); code != 1 || b.AllowToDeny != adults || len(b.Changes) != adults {
		t.Errorf("whatif of the bundle: exit %d, %d changes", code, len(b.Changes))
	}
	// Cascading changes nothing here (a refused transfer changes no state).
	if code, c := whatif(noDE, "--server", h.app.URL, "--cascade"); code != 1 || c.Mode != "cascade" || c.AllowToDeny != adults || len(c.Changes) != adults {
		t.Errorf("cascade without DE: exit %d, mode %s, %d changes", code, c.Mode, len(c.Changes))
	}
	if code, c := whatif(same, "--server", h.app.URL, "--cascade"); code != 0 || len(c.Changes) != 0 {
		t.Errorf("cascade with the unchanged set: exit %d, %d changes", code, len(c.Changes))
	}
	// The same over the API, with a security team's token and the candidate
	// as an OPA bundle; an auditor token may not.
	var bundle bytes.Buffer
	if err := policy.BuildBundle(&bundle, os.DirFS(noDE), "no-de", nil, ""); err != nil {
		t.Fatal(err)
	}
	sec := client.New(h.app.URL, h.token("policy", "").Token)
	resp, err := sec.Do(context.Background(), http.MethodPost, "/v1/policy/whatif", nil, bundle.Bytes(), "application/gzip")
	if err != nil {
		t.Fatal(err)
	}
	var api whatifReport
	err = json.NewDecoder(resp.Body).Decode(&api)
	resp.Body.Close()
	if err != nil || api.AllowToDeny != adults || len(api.Changes) != adults {
		t.Errorf("POST /v1/policy/whatif: %v, %d allow→deny, %d changes", err, api.AllowToDeny, len(api.Changes))
	}
	if _, err := h.auditor().Do(context.Background(), http.MethodPost, "/v1/policy/whatif", nil, bundle.Bytes(), "application/gzip"); !client.IsAPIError(err, "forbidden") {
		t.Errorf("an auditor's whatif: %v, want 403", err)
	}
	if _, err := sec.Do(context.Background(), http.MethodPost, "/v1/policy/whatif", nil, []byte("not a bundle"), "application/gzip"); !client.IsAPIError(err, "invalid_request") {
		t.Errorf("a body that is no bundle: %v, want 400", err)
	}
	if h.streamLen() != size || h.app.Engine.Active().Revision() != rev {
		t.Errorf("whatif changed the ledger (%d -> %d records) or the active set", size, h.streamLen())
	}
	if after, err := h.app.Ledger.Tree().Root(treeSize); err != nil || after != root || h.app.Ledger.Tree().Size() != treeSize {
		t.Errorf("the tree changed: size %d -> %d, root %x -> %x (%v)", treeSize, h.app.Ledger.Tree().Size(), root, after, err)
	}
}
