package auth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"custos.dev/ledger/natstest"
	"custos.dev/services/auth"
)

func openStore(t *testing.T) (*auth.Store, jetstream.KeyValue) {
	t.Helper()
	js, _ := jetstream.New(natstest.Connect(t))
	kv, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: auth.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	s, err := auth.Open(context.Background(), kv, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, kv
}

func TestRolesAndRevocation(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t)
	if _, _, err := s.Create(ctx, auth.RoleEmitter, "", ""); !errors.Is(err, auth.ErrSourceNeeded) {
		t.Errorf("emitter without source: %v", err)
	}
	if _, _, err := s.Create(ctx, "root", "", ""); !errors.Is(err, auth.ErrInvalidRole) {
		t.Errorf("unknown role: %v", err)
	}
	tok, secret, err := s.Create(ctx, auth.RolePolicy, "", "security team")
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Check(secret)
	if err != nil || got.ID != tok.ID || !got.Allows(auth.RolePolicy) || got.Allows(auth.RoleAuditor) {
		t.Fatalf("policy token: %+v %v", got, err)
	}
	if _, err := s.Revoke(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Check(secret); !errors.Is(err, auth.ErrBadToken) {
		t.Errorf("a revoked token checks: %v", err)
	}
	// A token the store once held is never stored again, revoked or deleted.
	if _, err := s.Import(ctx, secret, auth.RoleAdmin); !errors.Is(err, auth.ErrRevoked) {
		t.Errorf("import of a revoked token: %v", err)
	}
}

func TestImportNeverRevives(t *testing.T) {
	ctx := context.Background()
	s, kv := openStore(t)
	secret, err := auth.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, secret, auth.RoleAdmin); err != nil {
		t.Fatalf("first import: %v", err)
	}
	if _, err := s.Import(ctx, secret, auth.RoleAdmin); err != nil {
		t.Fatalf("import of a valid token: %v", err)
	}
	tok, err := s.Check(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		if _, err := s.Check(secret); err != nil {
			break
		}
		select {
		case <-deadline:
			t.Fatal("the deleted token still checks")
		case <-tick.C:
		}
	}
	if _, err := s.Import(ctx, secret, auth.RoleAdmin); !errors.Is(err, auth.ErrRevoked) {
		t.Errorf("import of a deleted token: %v", err)
	}
}
