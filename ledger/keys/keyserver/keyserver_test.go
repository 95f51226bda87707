package keyserver

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// The tests drive the server only as Custos does: through the Vault API
// client over real HTTP on the loopback interface.

type testServer struct {
	s   *Server
	url string
	c   *vault.Client
	dir string
}

func start(t *testing.T, dir string, opts ...Option) *testServer {
	t.Helper()
	s, err := Open(dir, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	url, err := s.ListenAndServe(t.Context(), "127.0.0.1:0")
	if err != nil {
		t.Fatalf("ListenAndServe: %v", err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return &testServer{s: s, url: url, c: client(t, url, s.RootToken()), dir: dir}
}

func client(t *testing.T, url, token string) *vault.Client {
	t.Helper()
	cfg := vault.DefaultConfig()
	cfg.Address = url
	cfg.MaxRetries = 0
	cfg.Timeout = 10 * time.Second
	c, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatalf("vault client: %v", err)
	}
	c.SetToken(token)
	return c
}

func write(t *testing.T, c *vault.Client, path string, data map[string]any) *vault.Secret {
	t.Helper()
	sec, err := c.Logical().Write(path, data)
	if err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	return sec
}

func read(t *testing.T, c *vault.Client, path string) *vault.Secret {
	t.Helper()
	sec, err := c.Logical().Read(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return sec
}

// respErr asserts that err is a Vault response error with the given status
// and, when want is not empty, an error message containing it.
func respErr(t *testing.T, err error, status int, want string) {
	t.Helper()
	var re *vault.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("want a %d response error, got %v", status, err)
	}
	if re.StatusCode != status {
		t.Fatalf("status %d, want %d (%v)", re.StatusCode, status, re.Errors)
	}
	if want != "" && !slices.ContainsFunc(re.Errors, func(e string) bool { return strings.Contains(e, want) }) {
		t.Fatalf("errors %q lack %q", re.Errors, want)
	}
}

func b64s(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func str(t *testing.T, sec *vault.Secret, field string) string {
	t.Helper()
	if sec == nil {
		t.Fatalf("no response, want field %s", field)
	}
	v, ok := sec.Data[field].(string)
	if !ok {
		t.Fatalf("field %s = %#v, want a string", field, sec.Data[field])
	}
	return v
}

func num(t *testing.T, v any) int64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%#v is not a number", v)
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func publicKey(t *testing.T, c *vault.Client, name string) ed25519.PublicKey {
	t.Helper()
	sec := read(t, c, "transit/keys/"+name)
	latest := fmt.Sprint(sec.Data["latest_version"])
	entry := sec.Data["keys"].(map[string]any)[latest].(map[string]any)
	if entry["name"] != "ed25519" {
		t.Fatalf("key entry name %v", entry["name"])
	}
	raw, err := base64.StdEncoding.DecodeString(entry["public_key"].(string))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		t.Fatalf("public key %q: %v", entry["public_key"], err)
	}
	if _, err := time.Parse(time.RFC3339Nano, entry["creation_time"].(string)); err != nil {
		t.Fatalf("creation_time: %v", err)
	}
	return raw
}

func rawSig(t *testing.T, s string) []byte {
	t.Helper()
	parts := strings.SplitN(s, ":", 3)
	if len(parts) != 3 || parts[0] != "vault" || !strings.HasPrefix(parts[1], "v") {
		t.Fatalf("signature %q is not in transit's format", s)
	}
	b, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEd25519SignVerify(t *testing.T) {
	ts := start(t, t.TempDir())
	sec := write(t, ts.c, "transit/keys/checkpoint", map[string]any{"type": "ed25519", "exportable": false})
	if sec.Data["type"] != "ed25519" || sec.Data["supports_signing"] != true || sec.Data["exportable"] != false {
		t.Fatalf("create answered %v", sec.Data)
	}
	pub := publicKey(t, ts.c, "checkpoint")

	msg := []byte("origin\n42\nroot hash\n")
	sec = write(t, ts.c, "transit/sign/checkpoint", map[string]any{"input": b64s(msg)})
	sig := str(t, sec, "signature")
	if !strings.HasPrefix(sig, "vault:v1:") || num(t, sec.Data["key_version"]) != 1 {
		t.Fatalf("sign answered %v", sec.Data)
	}
	if !ed25519.Verify(pub, msg, rawSig(t, sig)) {
		t.Fatal("a standard Ed25519 verifier rejects the transit signature")
	}

	sec = write(t, ts.c, "transit/verify/checkpoint", map[string]any{"input": b64s(msg), "signature": sig})
	if sec.Data["valid"] != true {
		t.Fatalf("verify: %v", sec.Data)
	}
	sec = write(t, ts.c, "transit/verify/checkpoint", map[string]any{"input": b64s([]byte("tampered")), "signature": sig})
	if sec.Data["valid"] != false {
		t.Fatalf("verify of a tampered message: %v", sec.Data)
	}
	// The hash algorithm in the URL is accepted and, for ed25519, ignored.
	sec = write(t, ts.c, "transit/sign/checkpoint/sha2-256", map[string]any{"input": b64s(msg)})
	if !ed25519.Verify(pub, msg, rawSig(t, str(t, sec, "signature"))) {
		t.Fatal("signature from sign/:name/sha2-256 does not verify")
	}

	// Batches carry their references and per-item errors.
	sec = write(t, ts.c, "transit/sign/checkpoint", map[string]any{"batch_input": []any{
		map[string]any{"input": b64s([]byte("a")), "reference": "ra"},
		map[string]any{"input": "not base64!", "reference": "rb"},
	}})
	results := sec.Data["batch_results"].([]any)
	r0, r1 := results[0].(map[string]any), results[1].(map[string]any)
	if r0["reference"] != "ra" || !ed25519.Verify(pub, []byte("a"), rawSig(t, r0["signature"].(string))) {
		t.Fatalf("batch item 0: %v", r0)
	}
	if r1["reference"] != "rb" || !strings.Contains(fmt.Sprint(r1["error"]), "unable to decode input as base64") {
		t.Fatalf("batch item 1: %v", r1)
	}
	sec = write(t, ts.c, "transit/verify/checkpoint", map[string]any{"batch_input": []any{
		map[string]any{"input": b64s([]byte("a")), "signature": r0["signature"]},
		map[string]any{"input": b64s([]byte("b")), "signature": r0["signature"]},
	}})
	results = sec.Data["batch_results"].([]any)
	if results[0].(map[string]any)["valid"] != true || results[1].(map[string]any)["valid"] != false {
		t.Fatalf("batch verify: %v", results)
	}

	// Signing with an encryption key, or with a missing key, is refused.
	write(t, ts.c, "transit/keys/sym", nil)
	_, err := ts.c.Logical().Write("transit/sign/sym", map[string]any{"input": b64s(msg)})
	respErr(t, err, http.StatusBadRequest, "does not support signing")
	_, err = ts.c.Logical().Write("transit/sign/nope", map[string]any{"input": b64s(msg)})
	respErr(t, err, http.StatusBadRequest, "signing key not found")
	_, err = ts.c.Logical().Write("transit/verify/checkpoint", map[string]any{"input": b64s(msg)})
	respErr(t, err, http.StatusBadRequest, "missing 'signature'")
}

func TestCreateRefusesWhatItDoesNotOffer(t *testing.T) {
	ts := start(t, t.TempDir())
	_, err := ts.c.Logical().Write("transit/keys/x", map[string]any{"type": "ed25519", "exportable": true})
	respErr(t, err, http.StatusBadRequest, "exportable keys are not supported")
	_, err = ts.c.Logical().Write("transit/keys/x", map[string]any{"type": "rsa-2048"})
	respErr(t, err, http.StatusBadRequest, "not supported by this key server")
	_, err = ts.c.Logical().Write("transit/keys/x", map[string]any{"type": "rot13"})
	respErr(t, err, http.StatusBadRequest, "unknown key type rot13")
	if sec := read(t, ts.c, "transit/keys/x"); sec != nil {
		t.Fatalf("a refused key exists: %v", sec.Data)
	}

	sec := write(t, ts.c, "transit/keys/x", map[string]any{"type": "chacha20-poly1305", "derived": false})
	if sec.Data["type"] != "chacha20-poly1305" || sec.Data["supports_encryption"] != true || sec.Data["deletion_allowed"] != false {
		t.Fatalf("create: %v", sec.Data)
	}
	keys := sec.Data["keys"].(map[string]any)
	if created := num(t, keys["1"]); time.Since(time.Unix(created, 0)) > time.Minute {
		t.Fatalf("symmetric key version 1 created at %d", created)
	}
	// Creating again keeps the key and warns, as transit does.
	sec = write(t, ts.c, "transit/keys/x", map[string]any{"type": "aes256-gcm96", "bogus": 1})
	if sec.Data["type"] != "chacha20-poly1305" || !slices.Contains(sec.Warnings, "key x already existed") ||
		!slices.Contains(sec.Warnings, "Endpoint ignored these unrecognized parameters: [bogus]") {
		t.Fatalf("re-create: %v %v", sec.Data, sec.Warnings)
	}
}

func TestEncryptDecrypt(t *testing.T) {
	ts := start(t, t.TempDir())
	// Encrypting under a missing key creates an aes256-gcm96 key (upsert).
	plain := []byte("the subject's data key")
	sec := write(t, ts.c, "transit/encrypt/subject-1", map[string]any{"plaintext": b64s(plain)})
	ct := str(t, sec, "ciphertext")
	if !strings.HasPrefix(ct, "vault:v1:") || num(t, sec.Data["key_version"]) != 1 {
		t.Fatalf("encrypt: %v", sec.Data)
	}
	if typ := read(t, ts.c, "transit/keys/subject-1").Data["type"]; typ != "aes256-gcm96" {
		t.Fatalf("upserted key type %v", typ)
	}
	// The payload is a 12-byte nonce, the ciphertext and a 16-byte tag.
	if raw := rawSig(t, ct); len(raw) != 12+len(plain)+16 {
		t.Fatalf("ciphertext payload %d bytes", len(raw))
	}
	sec = write(t, ts.c, "transit/decrypt/subject-1", map[string]any{"ciphertext": ct})
	if str(t, sec, "plaintext") != b64s(plain) {
		t.Fatal("decrypt does not return the plaintext")
	}

	batch := []any{}
	for i := range 5 {
		batch = append(batch, map[string]any{"plaintext": b64s(fmt.Appendf(nil, "value %d", i)), "reference": fmt.Sprint(i)})
	}
	sec = write(t, ts.c, "transit/encrypt/subject-1", map[string]any{"batch_input": batch})
	enc := sec.Data["batch_results"].([]any)
	dec := []any{}
	for i, r := range enc {
		m := r.(map[string]any)
		if m["reference"] != fmt.Sprint(i) || m["error"] != nil {
			t.Fatalf("batch encrypt item %d: %v", i, m)
		}
		dec = append(dec, map[string]any{"ciphertext": m["ciphertext"], "reference": m["reference"]})
	}
	sec = write(t, ts.c, "transit/decrypt/subject-1", map[string]any{"batch_input": dec})
	for i, r := range sec.Data["batch_results"].([]any) {
		m := r.(map[string]any)
		if m["plaintext"] != b64s(fmt.Appendf(nil, "value %d", i)) || m["reference"] != fmt.Sprint(i) {
			t.Fatalf("batch decrypt item %d: %v", i, m)
		}
	}

	// A batch with a bad item answers 400, or the code the caller chose
	// when some items succeeded, with the good items done.
	mixed := []any{map[string]any{"ciphertext": ct}, map[string]any{"ciphertext": "vault:v1:AAAA"}}
	_, err := ts.c.Logical().Write("transit/decrypt/subject-1", map[string]any{"batch_input": mixed})
	respErr(t, err, http.StatusBadRequest, "")
	sec = write(t, ts.c, "transit/decrypt/subject-1", map[string]any{"batch_input": mixed, "partial_failure_response_code": 200})
	results := sec.Data["batch_results"].([]any)
	if results[0].(map[string]any)["plaintext"] != b64s(plain) || results[1].(map[string]any)["error"] != "invalid ciphertext length" {
		t.Fatalf("partial batch: %v", results)
	}

	// Tampering is detected; malformed input is a 400 with transit's words.
	raw := rawSig(t, ct)
	raw[len(raw)-1] ^= 1
	_, err = ts.c.Logical().Write("transit/decrypt/subject-1", map[string]any{"ciphertext": "vault:v1:" + b64s(raw)})
	respErr(t, err, http.StatusBadRequest, "message authentication failed")
	_, err = ts.c.Logical().Write("transit/decrypt/subject-1", map[string]any{"ciphertext": "v1:abc"})
	respErr(t, err, http.StatusBadRequest, "invalid ciphertext: no prefix")
	_, err = ts.c.Logical().Write("transit/decrypt/subject-1", map[string]any{"ciphertext": "vault:v9:" + b64s(raw)})
	respErr(t, err, http.StatusBadRequest, "invalid ciphertext: version is too new")
	_, err = ts.c.Logical().Write("transit/encrypt/subject-1", map[string]any{"plaintext": "***"})
	respErr(t, err, http.StatusBadRequest, "illegal base64 data")
	_, err = ts.c.Logical().Write("transit/encrypt/subject-1", map[string]any{})
	respErr(t, err, http.StatusBadRequest, "missing plaintext to encrypt")
	_, err = ts.c.Logical().Write("transit/decrypt/nope", map[string]any{"ciphertext": ct})
	respErr(t, err, http.StatusBadRequest, "encryption key not found")

	// Each key seals for itself: another key cannot open the ciphertext.
	write(t, ts.c, "transit/keys/subject-2", map[string]any{"type": "aes256-gcm96"})
	_, err = ts.c.Logical().Write("transit/decrypt/subject-2", map[string]any{"ciphertext": ct})
	respErr(t, err, http.StatusBadRequest, "message authentication failed")
}

func TestDerivedKeys(t *testing.T) {
	ts := start(t, t.TempDir())
	ctxA, ctxB := b64s([]byte("tenant a")), b64s([]byte("tenant b"))
	// An upsert with a context creates a derived key, as in transit.
	sec := write(t, ts.c, "transit/encrypt/derived", map[string]any{"plaintext": b64s([]byte("x")), "context": ctxA})
	ct := str(t, sec, "ciphertext")
	info := read(t, ts.c, "transit/keys/derived").Data
	if info["derived"] != true || info["kdf"] != "hkdf_sha256" {
		t.Fatalf("key: %v", info)
	}
	sec = write(t, ts.c, "transit/decrypt/derived", map[string]any{"ciphertext": ct, "context": ctxA})
	if str(t, sec, "plaintext") != b64s([]byte("x")) {
		t.Fatal("derived decrypt")
	}
	_, err := ts.c.Logical().Write("transit/decrypt/derived", map[string]any{"ciphertext": ct, "context": ctxB})
	respErr(t, err, http.StatusBadRequest, "message authentication failed")
	_, err = ts.c.Logical().Write("transit/decrypt/derived", map[string]any{"ciphertext": ct})
	respErr(t, err, http.StatusBadRequest, "missing 'context' for key derivation")
}

func TestDataKey(t *testing.T) {
	ts := start(t, t.TempDir())
	write(t, ts.c, "transit/keys/wrap", nil)

	sec := write(t, ts.c, "transit/datakey/plaintext/wrap", map[string]any{"bits": 256})
	wrapped, plain := str(t, sec, "ciphertext"), str(t, sec, "plaintext")
	if num(t, sec.Data["key_version"]) != 1 {
		t.Fatalf("datakey: %v", sec.Data)
	}
	dk, _ := base64.StdEncoding.DecodeString(plain)
	if len(dk) != 32 {
		t.Fatalf("data key of %d bytes", len(dk))
	}
	sec = write(t, ts.c, "transit/decrypt/wrap", map[string]any{"ciphertext": wrapped})
	if str(t, sec, "plaintext") != plain {
		t.Fatal("unwrapping the datakey does not give the plaintext key")
	}

	sec = write(t, ts.c, "transit/datakey/wrapped/wrap", map[string]any{"bits": "512"})
	if _, ok := sec.Data["plaintext"]; ok {
		t.Fatal("the wrapped flavour returns the plaintext key")
	}
	sec = write(t, ts.c, "transit/decrypt/wrap", map[string]any{"ciphertext": str(t, sec, "ciphertext")})
	if dk, _ := base64.StdEncoding.DecodeString(str(t, sec, "plaintext")); len(dk) != 64 {
		t.Fatalf("512-bit wrapped data key unwraps to %d bytes", len(dk))
	}

	_, err := ts.c.Logical().Write("transit/datakey/wrapped/wrap", map[string]any{"bits": 100})
	respErr(t, err, http.StatusBadRequest, "invalid bit length")
	_, err = ts.c.Logical().Write("transit/datakey/clear/wrap", nil)
	respErr(t, err, http.StatusBadRequest, "must be 'plaintext' or 'wrapped'")
	_, err = ts.c.Logical().Write("transit/datakey/plaintext/nope", nil)
	respErr(t, err, http.StatusBadRequest, "encryption key not found")
}

func TestRotate(t *testing.T) {
	ts := start(t, t.TempDir())
	write(t, ts.c, "transit/keys/rot", nil)
	old := str(t, write(t, ts.c, "transit/encrypt/rot", map[string]any{"plaintext": b64s([]byte("old"))}), "ciphertext")

	sec := write(t, ts.c, "transit/keys/rot/rotate", nil)
	if num(t, sec.Data["latest_version"]) != 2 || len(sec.Data["keys"].(map[string]any)) != 2 {
		t.Fatalf("rotate: %v", sec.Data)
	}
	sec = write(t, ts.c, "transit/encrypt/rot", map[string]any{"plaintext": b64s([]byte("new"))})
	if ct := str(t, sec, "ciphertext"); !strings.HasPrefix(ct, "vault:v2:") {
		t.Fatalf("after rotation encrypt uses %q", ct)
	}
	sec = write(t, ts.c, "transit/decrypt/rot", map[string]any{"ciphertext": old})
	if str(t, sec, "plaintext") != b64s([]byte("old")) {
		t.Fatal("old ciphertext does not decrypt after rotation")
	}
	// Encrypting with an explicit older version, until it is forbidden.
	sec = write(t, ts.c, "transit/encrypt/rot", map[string]any{"plaintext": b64s([]byte("v1")), "key_version": 1})
	if !strings.HasPrefix(str(t, sec, "ciphertext"), "vault:v1:") {
		t.Fatal("key_version 1 not honoured")
	}
	sec = write(t, ts.c, "transit/keys/rot/config", map[string]any{"min_decryption_version": 2, "min_encryption_version": 2})
	if num(t, sec.Data["min_decryption_version"]) != 2 {
		t.Fatalf("config: %v", sec.Data)
	}
	_, err := ts.c.Logical().Write("transit/decrypt/rot", map[string]any{"ciphertext": old})
	respErr(t, err, http.StatusBadRequest, "disallowed by policy (too old)")
	_, err = ts.c.Logical().Write("transit/encrypt/rot", map[string]any{"plaintext": b64s([]byte("x")), "key_version": 1})
	respErr(t, err, http.StatusBadRequest, "less than the minimum encryption key version")
	_, err = ts.c.Logical().Write("transit/keys/rot/config", map[string]any{"min_decryption_version": 3})
	respErr(t, err, http.StatusBadRequest, "latest key version is 2")

	// A rotated signing key signs with its new version; both verify.
	write(t, ts.c, "transit/keys/sig", map[string]any{"type": "ed25519"})
	sig1 := str(t, write(t, ts.c, "transit/sign/sig", map[string]any{"input": b64s([]byte("m"))}), "signature")
	write(t, ts.c, "transit/keys/sig/rotate", nil)
	sig2 := str(t, write(t, ts.c, "transit/sign/sig", map[string]any{"input": b64s([]byte("m"))}), "signature")
	if !strings.HasPrefix(sig2, "vault:v2:") || !ed25519.Verify(publicKey(t, ts.c, "sig"), []byte("m"), rawSig(t, sig2)) {
		t.Fatalf("signature after rotation %q", sig2)
	}
	for _, sig := range []string{sig1, sig2} {
		if write(t, ts.c, "transit/verify/sig", map[string]any{"input": b64s([]byte("m")), "signature": sig}).Data["valid"] != true {
			t.Fatalf("%s does not verify", sig)
		}
	}
}

func TestDeletion(t *testing.T) {
	ts := start(t, t.TempDir())
	write(t, ts.c, "transit/keys/doomed", nil)
	ct := str(t, write(t, ts.c, "transit/encrypt/doomed", map[string]any{"plaintext": b64s([]byte("secret"))}), "ciphertext")

	_, err := ts.c.Logical().Delete("transit/keys/doomed")
	respErr(t, err, http.StatusBadRequest, "deletion is not allowed for this key")
	if read(t, ts.c, "transit/keys/doomed") == nil {
		t.Fatal("refused deletion deleted the key")
	}

	sec := write(t, ts.c, "transit/keys/doomed/config", map[string]any{"deletion_allowed": true})
	if sec.Data["deletion_allowed"] != true {
		t.Fatalf("config: %v", sec.Data)
	}
	if _, err := ts.c.Logical().Delete("transit/keys/doomed"); err != nil {
		t.Fatalf("delete: %v", err)
	}

	// Gone: reading is a 404 (nil secret to the client), using it fails.
	if sec := read(t, ts.c, "transit/keys/doomed"); sec != nil {
		t.Fatalf("deleted key still reads: %v", sec.Data)
	}
	req, _ := http.NewRequest(http.MethodGet, ts.url+"/v1/transit/keys/doomed", nil)
	req.Header.Set("X-Vault-Token", ts.s.RootToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || strings.TrimSpace(string(body)) != `{"errors":[]}` {
		t.Fatalf("read of a deleted key: %d %s", resp.StatusCode, body)
	}
	_, err = ts.c.Logical().Write("transit/decrypt/doomed", map[string]any{"ciphertext": ct})
	respErr(t, err, http.StatusBadRequest, "encryption key not found")
	_, err = ts.c.Logical().Write("transit/keys/doomed/config", map[string]any{"deletion_allowed": true})
	respErr(t, err, http.StatusBadRequest, "no existing key named doomed could be found")
	_, err = ts.c.Logical().Delete("transit/keys/doomed")
	respErr(t, err, http.StatusBadRequest, "not found")
	if list, err := ts.c.Logical().List("transit/keys"); err != nil || list != nil {
		t.Fatalf("list after the only key went: %v %v", list, err)
	}
}

func TestAuth(t *testing.T) {
	ts := start(t, t.TempDir())
	for _, tok := range []string{"hvs.wrong", ""} {
		c := client(t, ts.url, tok)
		if tok == "" {
			c.ClearToken()
		}
		_, err := c.Logical().Write("transit/encrypt/k", map[string]any{"plaintext": b64s([]byte("x"))})
		respErr(t, err, http.StatusForbidden, "permission denied")
		_, err = c.Logical().Read("transit/keys/k")
		respErr(t, err, http.StatusForbidden, "permission denied")
		// Health needs no token, as in Vault.
		h, err := c.Sys().Health()
		if err != nil || !h.Initialized || h.Sealed || h.Standby || h.Version == "" {
			t.Fatalf("health without a token: %+v %v", h, err)
		}
	}
	if read(t, ts.c, "transit/keys/k") != nil {
		t.Fatal("an unauthorized encrypt created a key")
	}

	// Authorization: Bearer is accepted like X-Vault-Token.
	req, _ := http.NewRequest(http.MethodPost, ts.url+"/v1/transit/encrypt/k", strings.NewReader(`{"plaintext":"eA=="}`))
	req.Header.Set("Authorization", "Bearer "+ts.s.RootToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("bearer token: %d", resp.StatusCode)
	}

	self, err := ts.c.Auth().Token().LookupSelf()
	if err != nil {
		t.Fatal(err)
	}
	if self.Data["id"] != ts.s.RootToken() || !slices.Equal(toStrings(self.Data["policies"]), []string{"root"}) {
		t.Fatalf("lookup-self: %v", self.Data)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, e := range v.([]any) {
		out = append(out, fmt.Sprint(e))
	}
	return out
}

func TestRoutesAndMounts(t *testing.T) {
	ts := start(t, t.TempDir())
	mounts, err := ts.c.Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	if m := mounts["transit/"]; m == nil || m.Type != "transit" || m.UUID == "" {
		t.Fatalf("mounts: %v", mounts)
	}
	if err := ts.c.Sys().Mount("custos/transit", &vault.MountInput{Type: "transit"}); err != nil {
		t.Fatal(err)
	}
	respErr(t, ts.c.Sys().Mount("custos/transit", &vault.MountInput{Type: "transit"}), http.StatusBadRequest, "already in use")
	respErr(t, ts.c.Sys().Mount("kv", &vault.MountInput{Type: "kv"}), http.StatusBadRequest, "plugin not found")
	sec := write(t, ts.c, "custos/transit/encrypt/k", map[string]any{"plaintext": b64s([]byte("x"))})
	// Mounts are separate key rings.
	_, err = ts.c.Logical().Write("transit/decrypt/k", map[string]any{"ciphertext": str(t, sec, "ciphertext")})
	respErr(t, err, http.StatusBadRequest, "encryption key not found")

	write(t, ts.c, "transit/keys/b", nil)
	write(t, ts.c, "transit/keys/a", map[string]any{"type": "ed25519"})
	list, err := ts.c.Logical().List("transit/keys")
	if err != nil || !slices.Equal(toStrings(list.Data["keys"]), []string{"a", "b"}) {
		t.Fatalf("list: %v %v", list, err)
	}

	_, err = ts.c.Logical().Read("transit/encrypt/a")
	respErr(t, err, http.StatusMethodNotAllowed, "unsupported operation")
	_, err = ts.c.Logical().Write("transit/frobnicate/a", nil)
	respErr(t, err, http.StatusNotFound, "unsupported path")
	_, err = ts.c.Logical().Write("nowhere/encrypt/a", nil)
	respErr(t, err, http.StatusNotFound, "no handler for route")
	_, err = ts.c.Logical().Write("transit/keys/bad name!", nil)
	respErr(t, err, http.StatusNotFound, "")

	if err := ts.c.Sys().Unmount("custos/transit"); err != nil {
		t.Fatal(err)
	}
	_, err = ts.c.Logical().Write("custos/transit/decrypt/k", map[string]any{"ciphertext": str(t, sec, "ciphertext")})
	respErr(t, err, http.StatusNotFound, "no handler for route")

	// Malformed bodies are JSON errors too.
	req, _ := http.NewRequest(http.MethodPost, ts.url+"/v1/transit/encrypt/a", strings.NewReader(`{"plaintext":`))
	req.Header.Set("X-Vault-Token", ts.s.RootToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ Errors []string }
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusBadRequest || len(body.Errors) != 1 {
		t.Fatalf("truncated JSON: %d %v %v", resp.StatusCode, body, err)
	}
}

func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	ts := start(t, dir)
	token := ts.s.RootToken()
	write(t, ts.c, "transit/keys/sig", map[string]any{"type": "ed25519"})
	pub := publicKey(t, ts.c, "sig")
	ct := str(t, write(t, ts.c, "transit/encrypt/sym", map[string]any{"plaintext": b64s([]byte("kept"))}), "ciphertext")
	write(t, ts.c, "transit/keys/sym/rotate", nil)
	write(t, ts.c, "transit/keys/sym/config", map[string]any{"deletion_allowed": true})
	if err := ts.c.Sys().Mount("other", &vault.MountInput{Type: "transit"}); err != nil {
		t.Fatal(err)
	}
	write(t, ts.c, "other/keys/o", nil)

	if _, err := Open(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open of a directory in use: %v", err)
	}
	for name, want := range map[string]os.FileMode{masterKeyFile: 0o600, rootTokenFile: 0o600} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil || info.Mode().Perm() != want {
			t.Fatalf("%s: %v %v", name, info.Mode(), err)
		}
	}
	if err := ts.s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.c.Logical().Read("transit/keys/sig"); err == nil {
		t.Fatal("a shut-down server still answers")
	}
	// A write torn by a crash leaves a temporary file; it is cleared away.
	torn, _ := filepath.Glob(filepath.Join(dir, keysDir, "*"))
	tornFile := filepath.Join(torn[0], ".deadbeef.key.123"+tmpSuffix)
	if err := os.WriteFile(tornFile, []byte("CKS1half"), 0o600); err != nil {
		t.Fatal(err)
	}

	ts2 := start(t, dir)
	if ts2.s.RootToken() != token {
		t.Fatal("the root token changed across restarts")
	}
	if !bytes.Equal(publicKey(t, ts2.c, "sig"), pub) {
		t.Fatal("the signing key changed across restarts")
	}
	if str(t, write(t, ts2.c, "transit/decrypt/sym", map[string]any{"ciphertext": ct}), "plaintext") != b64s([]byte("kept")) {
		t.Fatal("old ciphertext does not decrypt after restart")
	}
	info := read(t, ts2.c, "transit/keys/sym").Data
	if num(t, info["latest_version"]) != 2 || info["deletion_allowed"] != true {
		t.Fatalf("key config lost across restarts: %v", info)
	}
	if read(t, ts2.c, "other/keys/o") == nil {
		t.Fatal("the extra mount's key was lost across restarts")
	}
	if _, err := os.Stat(tornFile); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("torn temporary file left behind: %v", err)
	}
}

func TestServeStopsOnShutdown(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	c := client(t, "http://"+ln.Addr().String(), s.RootToken())
	if _, err := c.Sys().Health(); err != nil {
		t.Fatal(err)
	}
	// LIST is a method of its own in Vault's API.
	req, _ := http.NewRequest("LIST", "http://"+ln.Addr().String()+"/v1/transit/keys", nil)
	req.Header.Set("X-Vault-Token", s.RootToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound { // no keys yet: Vault's 404
		t.Fatalf("LIST of no keys: %d", resp.StatusCode)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

func TestCorruptStateIsRefused(t *testing.T) {
	dir := t.TempDir()
	ts := start(t, dir)
	write(t, ts.c, "transit/keys/k", nil)
	if err := ts.s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	master, err := os.ReadFile(filepath.Join(dir, masterKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	keyFiles := func() int {
		files, _ := filepath.Glob(filepath.Join(dir, keysDir, "*", "*"+keyFileExt))
		return len(files)
	}

	if err := os.WriteFile(filepath.Join(dir, masterKeyFile), randomBytes(masterKeySize), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open with another master key: %v", err)
	}
	if err := os.Remove(filepath.Join(dir, masterKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open without the master key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, masterKeyFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("a fresh master key was made for a directory holding sealed state")
	}

	// A lost mount table must not pass for a first start, which would
	// shred the keys as orphans.
	if err := os.WriteFile(filepath.Join(dir, masterKeyFile), master, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, stateFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open without the state file: %v", err)
	}
	if keyFiles() != 1 {
		t.Fatal("the key file did not survive a refused Open")
	}
}

// dirContains reports whether any file under dir holds needle, in its raw
// bytes or, for sealed files, once opened with the master key: after a
// deletion the material must be gone even to someone holding that key.
func dirContains(t *testing.T, dir string, needle []byte) []string {
	t.Helper()
	master, err := os.ReadFile(filepath.Join(dir, masterKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	st, err := newStore(dir, master)
	if err != nil {
		t.Fatal(err)
	}
	forms := [][]byte{needle, []byte(base64.StdEncoding.EncodeToString(needle)), []byte(fmt.Sprintf("%x", needle))}
	var hits []string
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		rel = filepath.ToSlash(rel)
		views := map[string][]byte{rel + " (raw)": raw}
		if plain, err := st.openBlob(rel, raw); err == nil {
			views[rel+" (opened)"] = plain
		}
		for where, v := range views {
			for _, f := range forms {
				if bytes.Contains(v, f) {
					hits = append(hits, where)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

func keyMaterial(t *testing.T, s *Server, mountPath, name string) [][]byte {
	t.Helper()
	s.mu.RLock()
	m := s.mounts[mountPath]
	s.mu.RUnlock()
	k := m.rlock(name)
	if k == nil {
		t.Fatalf("no key %s", name)
	}
	defer k.mu.RUnlock()
	var out [][]byte
	for _, v := range k.pol.Versions {
		out = append(out, bytes.Clone(v.Key))
	}
	return out
}

func TestDeletedKeyMaterialLeavesTheDisk(t *testing.T) {
	dir := t.TempDir()
	ts := start(t, dir)
	write(t, ts.c, "transit/keys/subject", nil)
	write(t, ts.c, "transit/keys/subject/rotate", nil)
	write(t, ts.c, "transit/keys/keeper", map[string]any{"type": "ed25519"})
	material := keyMaterial(t, ts.s, "transit/", "subject")
	keeper := keyMaterial(t, ts.s, "transit/", "keeper")
	if len(material) != 2 {
		t.Fatalf("%d versions", len(material))
	}
	for _, m := range material {
		hits := dirContains(t, dir, m)
		if len(hits) == 0 {
			t.Fatal("the scan does not find live key material: it would prove nothing")
		}
		for _, h := range hits {
			// At rest the material exists only sealed, in its key file.
			if !strings.HasPrefix(h, keysDir+"/") || !strings.HasSuffix(h, " (opened)") {
				t.Fatalf("key material found outside its sealed key file: %v", hits)
			}
		}
	}

	write(t, ts.c, "transit/keys/subject/config", map[string]any{"deletion_allowed": true})
	if _, err := ts.c.Logical().Delete("transit/keys/subject"); err != nil {
		t.Fatal(err)
	}
	for _, m := range material {
		if hits := dirContains(t, dir, m); len(hits) != 0 {
			t.Fatalf("deleted key material still in %v", hits)
		}
	}
	if len(dirContains(t, dir, keeper[0])) == 0 {
		t.Fatal("deleting one key lost another")
	}

	// The same holds for keys of a disabled mount.
	if err := ts.c.Sys().Mount("gone", &vault.MountInput{Type: "transit"}); err != nil {
		t.Fatal(err)
	}
	write(t, ts.c, "gone/keys/k", nil)
	gone := keyMaterial(t, ts.s, "gone/", "k")
	if err := ts.c.Sys().Unmount("gone"); err != nil {
		t.Fatal(err)
	}
	if hits := dirContains(t, dir, gone[0]); len(hits) != 0 {
		t.Fatalf("key material of a disabled mount still in %v", hits)
	}
}

func TestConcurrentEncrypts(t *testing.T) {
	ts := start(t, t.TempDir())
	const workers, each = 6, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	cts := make([][]string, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				// Half the workers share one key, created by whichever
				// upsert wins; the others race to create their own.
				name := "shared"
				if w%2 == 1 {
					name = fmt.Sprintf("own-%d", i%3)
				}
				sec, err := ts.c.Logical().Write("transit/encrypt/"+name, map[string]any{"plaintext": b64s(fmt.Appendf(nil, "%d/%d", w, i))})
				if err != nil {
					errs <- err
					return
				}
				cts[w] = append(cts[w], name+"|"+sec.Data["ciphertext"].(string))
			}
		})
	}
	wg.Go(func() {
		for range each {
			if _, err := ts.c.Logical().Write("transit/keys/shared/rotate", nil); err != nil && !strings.Contains(err.Error(), "key not found") {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for w, list := range cts {
		for i, entry := range list {
			name, ct, _ := strings.Cut(entry, "|")
			sec := write(t, ts.c, "transit/decrypt/"+name, map[string]any{"ciphertext": ct})
			if str(t, sec, "plaintext") != b64s(fmt.Appendf(nil, "%d/%d", w, i)) {
				t.Fatalf("worker %d item %d decrypts wrong", w, i)
			}
		}
	}
	if list, _ := ts.c.Logical().List("transit/keys"); len(list.Data["keys"].([]any)) != 4 {
		t.Fatalf("keys after the race: %v", list.Data["keys"])
	}
}

func TestLogsHoldNoSecrets(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ts := start(t, t.TempDir(), WithLogger(logger))
	plain := b64s([]byte("very personal value"))
	write(t, ts.c, "transit/keys/sig", map[string]any{"type": "ed25519"})
	ct := str(t, write(t, ts.c, "transit/encrypt/k", map[string]any{"plaintext": plain}), "ciphertext")
	dk := str(t, write(t, ts.c, "transit/datakey/plaintext/k", nil), "plaintext")
	write(t, ts.c, "transit/decrypt/k", map[string]any{"ciphertext": ct})
	write(t, ts.c, "transit/sign/sig", map[string]any{"input": plain})
	_, _ = ts.c.Logical().Write("transit/encrypt/k", map[string]any{"plaintext": "PERSONAL*VALUE"})
	_, _ = client(t, ts.url, "hvs.guess").Logical().Read("transit/keys/k")
	secrets := [][]byte{[]byte(ts.s.RootToken()), []byte(plain), []byte("very personal value"), []byte(dk), []byte("hvs.guess"), []byte("PERSONAL")}
	for _, m := range append(keyMaterial(t, ts.s, "transit/", "k"), keyMaterial(t, ts.s, "transit/", "sig")...) {
		secrets = append(secrets, []byte(b64s(m)), m)
	}
	if err := ts.s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(buf.Bytes(), []byte("key server request")) {
		t.Fatal("nothing was logged: the check would prove nothing")
	}
	for _, sec := range secrets {
		if bytes.Contains(buf.Bytes(), sec) {
			t.Fatalf("the log holds a secret:\n%s", buf.String())
		}
	}
}

func TestRequestsCounted(t *testing.T) {
	ts := start(t, t.TempDir())
	before := ts.s.Requests()
	write(t, ts.c, "transit/keys/k", nil)
	_, _ = ts.c.Logical().Read("transit/keys/nope")
	if _, err := ts.c.Sys().Health(); err != nil {
		t.Fatal(err)
	}
	if got := ts.s.Requests() - before; got != 3 {
		t.Fatalf("counted %d requests, want 3", got)
	}
}
