package e2e_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"custos.dev/ledger"
	"custos.dev/ledger/record"
	"custos.dev/services/app"
)

func writeRSAKeys(t *testing.T, dir, name string) (private, public string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	private, public = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".pub.pem")
	if err := os.WriteFile(private, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(public, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		t.Fatal(err)
	}
	return private, public
}

// The built-in set shipped as a signed OPA bundle: built with custos policy
// build, accepted with the signer's key, its activation naming the signer
// and the bundle's revision; a bundle signed by another key is refused at
// reload (the active set stays), and an unsigned one at start.
func TestSignedPolicyBundle(t *testing.T) {
	dir := t.TempDir()
	priv, pub := writeRSAKeys(t, dir, "security")
	otherPriv, _ := writeRSAKeys(t, dir, "intruder")
	bundlePath := filepath.Join(dir, "policies.tar.gz")
	buildFrom := func(src, out, key, revision string) {
		t.Helper()
		args := []string{"policy", "build", src, "--out", out, "--revision", revision, "--key-id", "security-team"}
		if key != "" {
			args = append(args, "--signing-key", key)
		}
		if code, out, errOut := run(t, nil, args...); code != 0 {
			t.Fatalf("policy build: exit %d %s %s", code, out, errOut)
		}
	}
	build := func(key, revision string) { buildFrom("-", bundlePath, key, revision) }
	build(priv, "r1")
	h := start(t, func(c *app.Config) {
		c.PoliciesDir, c.PolicyVerificationKey, c.PolicyKeyID, c.PolicyPoll = bundlePath, pub, "security-team", time.Hour
	})
	var acts []record.PolicyActivated
	_ = ledger.NewReader(h.app.Ledger.JetStream()).Replay(context.Background(), ledger.Filter{Type: record.TypePolicyActivated}, func(e ledger.Entry) error {
		r, _ := e.Parse()
		var d record.PolicyActivated
		_ = r.DecodeData(&d)
		acts = append(acts, d)
		return nil
	})
	if len(acts) != 1 || acts[0].Signer != "security-team" || acts[0].BundleRevision != "r1" {
		t.Fatalf("activations %+v", acts)
	}
	em := h.emitter()
	h.register(em, "user-bundle", "reg-bundle", 30)
	h.mustDeny(em, h.transfer("user-bundle", "tr-bundle", "US", "standard_contract"), "DESTINATION_NOT_ALLOWED")

	rev := h.app.Engine.Active().Revision()
	build(otherPriv, "r2")
	code, _, errOut := run(t, map[string]string{"CUSTOS_TOKEN": h.app.AdminToken}, "policy", "reload", "--server", h.app.URL)
	if code != 2 || !strings.Contains(errOut, "verif") || h.app.Engine.Active().Revision() != rev {
		t.Errorf("reload of a bundle signed by another key: exit %d %s", code, errOut)
	}

	// A security team's token installs a new signed bundle over the API;
	// one signed by another key is refused; a restart keeps the installed one.
	sec := h.token("policy", "")
	secEnv := map[string]string{"CUSTOS_TOKEN": sec.Token}
	changed := t.TempDir()
	copyDir(t, "../../policies", changed)
	if err := os.WriteFile(filepath.Join(changed, "extra.rego"), []byte("package custos.extra\n\nx := 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r4 := filepath.Join(dir, "r4.tar.gz")
	buildFrom(changed, r4, priv, "r4")
	code, out, errOut := run(t, secEnv, "policy", "install", r4, "--server", h.app.URL, "--output", "json")
	if code != 0 || !strings.Contains(out, `"activated": true`) {
		t.Fatalf("policy install: exit %d %s %s", code, out, errOut)
	}
	installed := h.app.Engine.Active().Revision()
	acts = acts[:0]
	_ = ledger.NewReader(h.app.Ledger.JetStream()).Replay(context.Background(), ledger.Filter{Type: record.TypePolicyActivated}, func(e ledger.Entry) error {
		r, _ := e.Parse()
		var d record.PolicyActivated
		_ = r.DecodeData(&d)
		acts = append(acts, d)
		return nil
	})
	id := strings.SplitN(strings.TrimPrefix(sec.Token, "cst_"), "_", 2)[0]
	if last := acts[len(acts)-1]; last.By != "token:"+id || last.Signer != "security-team" || last.BundleRevision != "r4" || last.Revision != installed {
		t.Errorf("the installation's activation: %+v", last)
	}
	intruder := filepath.Join(dir, "intruder.tar.gz")
	buildFrom(changed, intruder, otherPriv, "r5")
	if code, _, errOut := run(t, secEnv, "policy", "install", intruder, "--server", h.app.URL); code != 2 || h.app.Engine.Active().Revision() != installed {
		t.Errorf("install of a bundle signed by another key: exit %d %s", code, errOut)
	}
	h.restart()
	if got := h.app.Engine.Active().Revision(); got != installed {
		t.Errorf("after a restart the active set is %s, want the installed %s", got, installed)
	}
	h.down()
	build("", "r3")
	h.app = nil
	if a, err := app.Start(context.Background(), h.cfg); err == nil {
		_ = a.Close(context.Background())
		t.Fatal("Custos started with an unsigned bundle and a verification key")
	} else if !strings.Contains(err.Error(), ".signatures.json") {
		t.Errorf("start with an unsigned bundle: %v", err)
	}
}

// A bundle server is polled: its first bundle is the set at start, each new
// one is activated (the ledger names the bundle server and the signer), and
// one signed by another key is refused while the active set stays.
func TestPolicyBundleServer(t *testing.T) {
	dir := t.TempDir()
	priv, pub := writeRSAKeys(t, dir, "security")
	otherPriv, _ := writeRSAKeys(t, dir, "intruder")
	bundleOf := func(src, key, revision string) []byte {
		t.Helper()
		out := filepath.Join(dir, revision+".tar.gz")
		if code, o, e := run(t, nil, "policy", "build", src, "--out", out, "--revision", revision, "--key-id", "security-team", "--signing-key", key); code != 0 {
			t.Fatalf("policy build: %d %s %s", code, o, e)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var mu sync.Mutex
	served, etag := bundleOf("-", priv, "r1"), `"r1"`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		_, _ = w.Write(served)
	}))
	defer srv.Close()
	h := start(t, func(c *app.Config) {
		c.PolicyBundleURL, c.PolicyVerificationKey, c.PolicyKeyID, c.PolicyPoll = srv.URL, pub, "security-team", 20*time.Millisecond
	})
	first := h.app.Engine.Active().Revision()

	changed := t.TempDir()
	copyDir(t, "../../policies", changed)
	if err := os.WriteFile(filepath.Join(changed, "extra.rego"), []byte("package custos.extra\n\nx := 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r2 := bundleOf(changed, priv, "r2")
	mu.Lock()
	served, etag = r2, `"r2"`
	mu.Unlock()
	waitFor(t, "the bundle server's new bundle", func() bool { return h.app.Engine.Active().Revision() != first })
	var last record.PolicyActivated
	waitFor(t, "its activation on the ledger", func() bool {
		_ = ledger.NewReader(h.app.Ledger.JetStream()).Replay(context.Background(), ledger.Filter{Type: record.TypePolicyActivated}, func(e ledger.Entry) error {
			r, _ := e.Parse()
			_ = r.DecodeData(&last)
			return nil
		})
		return last.By == "bundle-server"
	})
	if last.Signer != "security-team" || last.BundleRevision != "r2" {
		t.Errorf("activation %+v", last)
	}
	active := h.app.Engine.Active().Revision()
	mu.Lock()
	served, etag = bundleOf(changed, otherPriv, "r3"), `"r3"`
	mu.Unlock()
	waitFor(t, "the refusal on /readyz", func() bool {
		res, err := h.readyz(true)
		if err != nil {
			return false
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return strings.Contains(string(b), "refused")
	})
	if h.app.Engine.Active().Revision() != active {
		t.Error("a bundle signed by another key was activated")
	}
}
