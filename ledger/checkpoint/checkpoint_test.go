package checkpoint_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"custos.dev/ledger/checkpoint"
	"custos.dev/ledger/keys"
	"custos.dev/ledger/keys/keystest"
)

const origin = "custos.test/ledger"

// Test-only note keys (never used outside tests): the fuzz corpus under
// testdata holds notes they signed.
const (
	testSKey      = "PRIVATE+KEY+custos.test/ledger+0ad7614c+AbHngDVTRWM9fmeZN1AJ0roXO7zivhPH4vGRYfnglIgW"
	testVKey      = "custos.test/ledger+0ad7614c+AdVjrpQkrG3XIRehUQ8KZiOLSyFVC4o5MgJBj4LZ7LfK"
	otherTestSKey = "PRIVATE+KEY+custos.test/other+d076ae50+AUWda+fU+MsGwpyeL7fpFmLmk6wkY+GODg0bvXyx9OUN"
)

type vaultEnv struct {
	keys  *keys.Client
	url   string
	token string
}

func newVault(t *testing.T) *vaultEnv {
	t.Helper()
	ks := keystest.Start(t)
	return &vaultEnv{keys: ks.Client(t), url: ks.URL, token: ks.Token}
}

// rootOf is the RFC 6962 root of n leaves, computed by hand so the test does
// not lean on the code under test.
func rootOf(n int) tlog.Hash {
	leaves := make([][]byte, n)
	for i := range leaves {
		leaves[i] = []byte(fmt.Sprintf(`{"leaf":%d}`, i))
	}
	return tlog.Hash(mth(leaves))
}

func mth(leaves [][]byte) [32]byte {
	switch len(leaves) {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return sha256.Sum256(append([]byte{0}, leaves[0]...))
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	l, r := mth(leaves[:k]), mth(leaves[k:])
	return sha256.Sum256(append(append([]byte{1}, l[:]...), r[:]...))
}

func mustSigner(t testing.TB, skey string) note.Signer {
	t.Helper()
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A checkpoint signed through Vault verifies with golang.org/x/mod/sumdb/note
// alone, given only the published verifier key.
func TestVaultSignedCheckpointVerifiesWithNoteAlone(t *testing.T) {
	ctx := context.Background()
	v := newVault(t)
	s, err := keys.NewNoteSigner(ctx, v.keys, checkpoint.DefaultKeyName, origin)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != origin || s.Origin() != origin {
		t.Fatalf("signer name %q origin %q", s.Name(), s.Origin())
	}
	root := rootOf(5)
	msg, err := checkpoint.Sign(origin, 5, root, s)
	if err != nil {
		t.Fatal(err)
	}

	verifier, err := note.NewVerifier(s.VerifierKey())
	if err != nil {
		t.Fatalf("verifier key %q does not parse: %v", s.VerifierKey(), err)
	}
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		t.Fatalf("note.Open: %v\n%s", err, msg)
	}
	wantText := origin + "\n5\n" + base64.StdEncoding.EncodeToString(root[:]) + "\n"
	if n.Text != wantText {
		t.Fatalf("note text %q, want %q", n.Text, wantText)
	}
	if len(n.Sigs) != 1 || n.Sigs[0].Name != origin || n.Sigs[0].Hash != s.KeyHash() {
		t.Fatalf("signatures %+v", n.Sigs)
	}

	// The verifier key carries exactly Vault's public key: name+hash+base64(0x01 || pub).
	pub, err := v.keys.PublicKey(ctx, checkpoint.DefaultKeyName)
	if err != nil {
		t.Fatal(err)
	}
	// name+hash+key; the base64 key may itself contain '+'.
	parts := strings.SplitN(s.VerifierKey(), "+", 3)
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 1+ed25519.PublicKeySize || raw[0] != 1 || !bytes.Equal(raw[1:], pub) {
		t.Fatalf("verifier key %q does not hold Vault's public key", s.VerifierKey())
	}
	// And the signature line is an Ed25519 signature by that key over the text.
	sigLine := strings.TrimPrefix(strings.Split(string(msg), "\n\n")[1], "— "+origin+" ")
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(sigLine))
	if err != nil || len(sig) != 4+ed25519.SignatureSize || !ed25519.Verify(pub, []byte(n.Text), sig[4:]) {
		t.Fatalf("signature line %q is not an Ed25519 signature by Vault's key", sigLine)
	}

	cp, err := checkpoint.Open(msg, s.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	if cp.Origin != origin || cp.Size != 5 || cp.Root != root || !bytes.Equal(cp.Note, msg) {
		t.Fatalf("Open = %+v", cp)
	}

	// A second signer over the same transit key (a restart) keeps the key.
	again, err := keys.NewNoteSigner(ctx, v.keys, checkpoint.DefaultKeyName, origin)
	if err != nil {
		t.Fatal(err)
	}
	if again.VerifierKey() != s.VerifierKey() {
		t.Fatalf("verifier key changed across signers: %q vs %q", again.VerifierKey(), s.VerifierKey())
	}
}

func TestOpenRejects(t *testing.T) {
	ctx := context.Background()
	v := newVault(t)
	s, err := keys.NewNoteSigner(ctx, v.keys, checkpoint.DefaultKeyName, origin)
	if err != nil {
		t.Fatal(err)
	}
	root := rootOf(7)
	good, err := checkpoint.Sign(origin, 7, root, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := checkpoint.Open(good, s.VerifierKey()); err != nil {
		t.Fatalf("baseline: %v", err)
	}
	// Another transit key under the same origin.
	otherKey, err := keys.NewNoteSigner(ctx, v.keys, "other-checkpoint-key", origin)
	if err != nil {
		t.Fatal(err)
	}
	byOtherKey, err := checkpoint.Sign(origin, 7, root, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	// The right key material under another origin name.
	otherOrigin, err := keys.NewNoteSigner(ctx, v.keys, checkpoint.DefaultKeyName, "custos.test/elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	byOtherOrigin, err := checkpoint.Sign("custos.test/elsewhere", 7, root, otherOrigin)
	if err != nil {
		t.Fatal(err)
	}
	// The right signer over a text naming another origin.
	wrongOriginLine, err := checkpoint.Sign("custos.test/elsewhere", 7, root, s)
	if err != nil {
		t.Fatal(err)
	}
	otherRoot := rootOf(8)
	text, sigs, _ := strings.Cut(string(good), "\n\n")
	lines := strings.Split(text, "\n")
	tamper := func(i int, val string) []byte {
		l := append([]string(nil), lines...)
		l[i] = val
		return []byte(strings.Join(l, "\n") + "\n\n" + sigs)
	}
	for name, msg := range map[string][]byte{
		"another key":        byOtherKey,
		"another origin key": byOtherOrigin,
		"wrong origin line":  wrongOriginLine,
		"size grown":         tamper(1, "8"),
		"size shrunk":        tamper(1, "6"),
		"root replaced":      tamper(2, base64.StdEncoding.EncodeToString(otherRoot[:])),
		"origin replaced":    tamper(0, "custos.test/elsewhere"),
		"signature dropped":  []byte(text + "\n\n"),
		"unsigned text":      []byte(text),
		"empty":              nil,
		"truncated":          good[:len(good)-10],
	} {
		if cp, err := checkpoint.Open(msg, s.VerifierKey()); !errors.Is(err, checkpoint.ErrInvalid) {
			t.Errorf("%s: Open = %+v, %v; want ErrInvalid", name, cp, err)
		}
	}
	if _, err := checkpoint.Open(good, "not a key"); !errors.Is(err, checkpoint.ErrInvalid) {
		t.Errorf("bad verifier key: err = %v", err)
	}
	if _, err := checkpoint.Open(good, otherKey.VerifierKey()); !errors.Is(err, checkpoint.ErrInvalid) {
		t.Errorf("note opened with another verifier key: err = %v", err)
	}
}

// Open refuses texts that verify but are not checkpoints Custos can use.
func TestOpenRefusesMalformedSignedTexts(t *testing.T) {
	signer := mustSigner(t, testSKey)
	root := rootOf(3)
	b64 := base64.StdEncoding.EncodeToString
	for name, text := range map[string]string{
		"size beyond int64": origin + "\n18446744073709551615\n" + b64(root[:]) + "\n",
		"short root":        origin + "\n3\n" + b64(root[:31]) + "\n",
		"long root":         origin + "\n3\n" + b64(append(root[:], 0)) + "\n",
		"negative size":     origin + "\n-3\n" + b64(root[:]) + "\n",
		"no root":           origin + "\n3\n",
		"root not base64":   origin + "\n3\n%%%\n",
	} {
		msg, err := note.Sign(&note.Note{Text: text}, signer)
		if err != nil {
			t.Fatal(err)
		}
		if cp, err := checkpoint.Open(msg, testVKey); !errors.Is(err, checkpoint.ErrInvalid) {
			t.Errorf("%s: Open = %+v, %v; want ErrInvalid", name, cp, err)
		}
	}
	// Extension lines and co-signatures by unknown keys are allowed (C2SP).
	ext := origin + "\n3\n" + b64(root[:]) + "\nextension line\n"
	msg, err := note.Sign(&note.Note{Text: ext}, signer, mustSigner(t, otherTestSKey))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := checkpoint.Open(msg, testVKey)
	if err != nil || cp.Size != 3 || cp.Root != root {
		t.Fatalf("checkpoint with extension and co-signature: %+v, %v", cp, err)
	}
}

// When the transit key is rotated behind Custos's back, the signer refuses to
// publish a signature the published verifier key would reject.
func TestSignerRefusesRotatedKey(t *testing.T) {
	ctx := context.Background()
	v := newVault(t)
	s, err := keys.NewNoteSigner(ctx, v.keys, checkpoint.DefaultKeyName, origin)
	if err != nil {
		t.Fatal(err)
	}
	cfg := vault.DefaultConfig()
	cfg.Address = v.url
	vc, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	vc.SetToken(v.token)
	if _, err := vc.Logical().WriteWithContext(ctx, "transit/keys/"+checkpoint.DefaultKeyName+"/rotate", nil); err != nil {
		t.Fatal(err)
	}
	if msg, err := checkpoint.Sign(origin, 1, rootOf(1), s); err == nil {
		t.Fatalf("signed with a rotated key:\n%s", msg)
	}
}
