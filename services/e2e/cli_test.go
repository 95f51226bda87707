package e2e_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The command line against a running server: tokens, emit (one event and
// a batch, allowed and denied), policy test/check, version, --help.
func TestCommandLine(t *testing.T) {
	h := start(t)
	admin := map[string]string{"CUSTOS_TOKEN": h.app.AdminToken}
	code, out, errOut := run(t, admin, "token", "create", "--role", "emitter", "--source", shopSource, "--server", h.app.URL, "--output", "json")
	if code != 0 {
		t.Fatalf("token create: %d %s %s", code, out, errOut)
	}
	var tok struct{ Token, Role, Source, ID string }
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.Token == "" || tok.Role != "emitter" || tok.Source != shopSource {
		t.Fatalf("token create output: %s", out)
	}
	code, out, _ = run(t, admin, "token", "list", "--server", h.app.URL, "--output", "json")
	if code != 0 || !strings.Contains(out, tok.ID) || strings.Contains(out, tok.Token) {
		t.Fatalf("token list must show the id and never the secret: %s", out)
	}

	dir := t.TempDir()
	one := filepath.Join(dir, "one.json")
	writeJSON(t, one, h.ev("privacy.subject.registered", "cli-1", "cli-user", map[string]any{"residence": "CN", "age": 33}))
	emitter := map[string]string{"CUSTOS_TOKEN": tok.Token}
	if code, out, errOut := run(t, emitter, "emit", one, "--server", h.app.URL, "--output", "json"); code != 0 || !strings.Contains(out, `"seq"`) {
		t.Fatalf("emit: %d %s %s", code, out, errOut)
	}
	batch := filepath.Join(dir, "batch.json")
	writeJSON(t, batch, []any{
		h.ev("privacy.subject.registered", "cli-2", "cli-user-2", map[string]any{"residence": "CN", "age": 40}),
		h.transfer("cli-user-2", "cli-3", "SG", "standard_contract"),
	})
	code, out, _ = run(t, emitter, "emit", batch, "--server", h.app.URL, "--output", "json")
	if code != 1 || !strings.Contains(out, "NO_SEPARATE_CONSENT") || !strings.Contains(out, `"status": 201`) {
		t.Fatalf("batch with a denial: exit %d (want 1)\n%s", code, out)
	}
	bad := filepath.Join(dir, "bad.json")
	_ = os.WriteFile(bad, []byte(`{"specversion":"1.0"}`), 0o644)
	if code, out, _ := run(t, emitter, "emit", bad, "--server", h.app.URL, "--output", "json"); code != 2 || !strings.Contains(out, "invalid_event") {
		t.Fatalf("bad event: exit %d %s", code, out)
	}
	code, out, _ = run(t, admin, "token", "revoke", tok.ID, "--server", h.app.URL)
	if code != 0 {
		t.Fatalf("revoke: %d %s", code, out)
	}
	if code, out, _ := run(t, emitter, "emit", one, "--server", h.app.URL, "--output", "json"); code != 2 || !strings.Contains(out, "unauthorized") {
		t.Fatalf("revoked token still works: %d %s", code, out)
	}

	if code, out, errOut := run(t, nil, "policy", "test", "--output", "json"); code != 0 || !strings.Contains(out, "coverage") {
		t.Fatalf("policy test: %d %s %s", code, out, errOut)
	}
	if code, out, errOut := run(t, nil, "policy", "check"); code != 0 {
		t.Fatalf("policy check: %d %s %s", code, out, errOut)
	}
	brokenDir := t.TempDir()
	_ = os.WriteFile(filepath.Join(brokenDir, "x.rego"), []byte("package custos.decision\n\nallow if {"), 0o644)
	if code, _, _ := run(t, nil, "policy", "check", brokenDir); code == 0 {
		t.Fatal("policy check accepted a broken directory")
	}
	if code, out, _ := run(t, nil, "version", "--output", "json"); code != 0 || !strings.Contains(out, "policy_revision") {
		t.Fatalf("version: %d %s", code, out)
	}
	for _, c := range [][]string{{"--help"}, {"serve", "--help"}, {"verify", "--help"}, {"replay", "--help"}, {"audit", "export", "--help"}, {"bench", "--help"}} {
		if code, out, _ := run(t, nil, c...); code != 0 || !strings.Contains(out, "Usage") {
			t.Fatalf("%v: %d %s", c, code, out)
		}
	}
	if code, _, errOut := run(t, nil, "no-such-command"); code != 2 || errOut == "" {
		t.Fatalf("unknown command: exit %d", code)
	}
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Smaller promises of the command line: an --output a command does not
// produce is exit 2; policy check names a missing directory and lists no
// problems as []; replay's CSV gives a denial's allow and reasons.
func TestCommandLineDetails(t *testing.T) {
	if code, _, errOut := run(t, nil, "version", "--output", "yaml"); code != 2 || !strings.Contains(errOut, `--output "yaml"`) {
		t.Errorf("version --output yaml: exit %d %s", code, errOut)
	}
	if code, _, errOut := run(t, nil, "transfers", "--output", "ndjson"); code != 2 || !strings.Contains(errOut, "transfers takes text, json, csv") {
		t.Errorf("transfers --output ndjson: exit %d %s", code, errOut)
	}
	if code, _, errOut := run(t, nil, "policy", "check", "/nonexistent-policies", "--output", "json"); code != 2 || !strings.Contains(errOut, "/nonexistent-policies") {
		t.Errorf("policy check of a missing directory: exit %d %s", code, errOut)
	}
	if code, out, _ := run(t, nil, "policy", "check", "--output", "json"); code != 0 || !strings.Contains(out, `"problems": []`) {
		t.Errorf("policy check of the built-in set: exit %d %s", code, out)
	}

	h := start(t)
	em := h.emitter()
	h.register(em, "cli-csv", "reg-cli-csv", 30)
	h.mustDeny(em, h.transfer("cli-csv", "tr-cli-csv", "US", "standard_contract"), "DESTINATION_NOT_ALLOWED")
	au := map[string]string{"CUSTOS_TOKEN": h.auditor().Token}
	code, out, errOut := run(t, au, "replay", "--server", h.app.URL, "--type", "custos.decision.denied", "--output", "csv")
	if code != 0 || !strings.Contains(out, ",false,DESTINATION_NOT_ALLOWED;NO_SEPARATE_CONSENT,") {
		t.Errorf("replay csv of a denial: exit %d %s %s", code, out, errOut)
	}
}
