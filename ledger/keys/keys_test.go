package keys_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"testing"

	"custos.dev/ledger/keys"
	"custos.dev/ledger/keys/keystest"
)

func newClient(t *testing.T) (*keys.Client, *keystest.Server) {
	t.Helper()
	ks := keystest.Start(t)
	return ks.Client(t), ks
}

func TestSignAndDataKeys(t *testing.T) {
	c, _ := newClient(t)
	ctx := context.Background()
	if err := c.EnsureKey(ctx, "sig", "ed25519"); err != nil {
		t.Fatal(err)
	}
	pub, err := c.PublicKey(ctx, "sig")
	if err != nil {
		t.Fatal(err)
	}
	sig, err := c.Sign(ctx, "sig", []byte("checkpoint"))
	if err != nil || !ed25519.Verify(pub, []byte("checkpoint"), sig) {
		t.Fatalf("signature does not verify with the public key: %v", err)
	}
	if err := c.EnsureKey(ctx, "subj", "aes256-gcm96"); err != nil {
		t.Fatal(err)
	}
	plain, wrapped, err := c.DataKey(ctx, "subj")
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Unwrap(ctx, "subj", wrapped)
	if err != nil || string(again) != string(plain) {
		t.Fatalf("unwrap: %v", err)
	}
	// Destruction is idempotent and makes the wrapped key useless.
	if err := c.DestroyKey(ctx, "subj"); err != nil {
		t.Fatal(err)
	}
	if err := c.DestroyKey(ctx, "subj"); err != nil {
		t.Fatalf("second destroy: %v", err)
	}
	if _, err := c.Unwrap(ctx, "subj", wrapped); !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("unwrap after destroy: %v, want ErrNotFound", err)
	}
	if ok, err := c.KeyExists(ctx, "subj"); ok || err != nil {
		t.Fatalf("exists after destroy: %v %v", ok, err)
	}
	if c.Calls() == 0 {
		t.Fatal("calls not counted")
	}
}

func TestUnavailable(t *testing.T) {
	c, ks := newClient(t)
	if err := ks.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Health(context.Background()); !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("health with the server down: %v", err)
	}
}
