package pii_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"custos.dev/ledger/keys"
	"custos.dev/ledger/keys/keystest"
	"custos.dev/ledger/natstest"
	"custos.dev/ledger/pii"
)

// startNATS runs a real JetStream server for the test and returns the keys
// bucket Custos uses.
func startNATS(t *testing.T) kvStore {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	kv, s, err := pii.OpenBucket(context.Background(), js, pii.KeysBucket, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	return kvStore{kv, s}
}

// kvStore is the keys bucket with its backing stream.
type kvStore struct {
	jetstream.KeyValue
	stream jetstream.Stream
}

type vaultEnv struct {
	url, token string
}

func startVault(t *testing.T) vaultEnv {
	t.Helper()
	ks := keystest.Start(t)
	return vaultEnv{url: ks.URL, token: ks.Token}
}

// client is one process's Vault client, counting its calls.
func (v vaultEnv) client(t *testing.T) *keys.Client {
	t.Helper()
	c, err := keys.New(keys.Config{Address: v.url, Token: v.token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

const ttl = 5 * time.Minute

// sameKey reports whether two handles hold the same data key: what one
// seals the other opens, and they commit alike.
func sameKey(t *testing.T, a, b *pii.SubjectKey) bool {
	t.Helper()
	v := pii.Values{"fields.email": json.RawMessage(`"a@example.cn"`)}
	sealed, err := a.Seal("p.e", v)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Open("p.e", sealed)
	return err == nil && a.Commit("x", []byte("y")) == b.Commit("x", []byte("y"))
}

func TestKeyringGetCreatesOnceAndCaches(t *testing.T) {
	ctx := context.Background()
	kv, v := startNATS(t), startVault(t)
	vc := v.client(t)
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	kr := pii.NewKeyring(vc, kv, kv.stream, ttl, clk.Now)
	calls := func(f func()) uint64 {
		before := vc.Calls()
		f()
		return vc.Calls() - before
	}

	var k1, k2, k3 *pii.SubjectKey
	var err error
	if n := calls(func() { _, err = kr.Get(ctx, "pnew", false) }); !errors.Is(err, pii.ErrNoKey) || n != 0 {
		t.Fatalf("Get without create of an unknown subject: %v after %d Vault calls", err, n)
	}
	if n := calls(func() { k1, err = kr.Get(ctx, "pnew", true) }); err != nil || n != 2 {
		t.Fatalf("first Get: %v after %d Vault calls, want 2 (create key, data key)", err, n)
	}
	if n := calls(func() { k2, err = kr.Get(ctx, "pnew", true) }); err != nil || n != 0 || k2 != k1 {
		t.Fatalf("cached Get: %v after %d Vault calls", err, n)
	}
	clk.Advance(ttl - time.Second)
	if n := calls(func() { _, err = kr.Get(ctx, "pnew", false) }); err != nil || n != 0 {
		t.Fatalf("Get just inside the TTL: %v after %d Vault calls", err, n)
	}
	clk.Advance(time.Second)
	if n := calls(func() { k3, err = kr.Get(ctx, "pnew", false) }); err != nil || n != 1 {
		t.Fatalf("Get after the TTL: %v after %d Vault calls, want 1 (unwrap)", err, n)
	}
	if !sameKey(t, k1, k3) {
		t.Fatal("the key changed when the cache was refreshed")
	}

	// Another process finds the same key in the bucket.
	other := pii.NewKeyring(v.client(t), kv, kv.stream, ttl, clk.Now)
	k4, err := other.Get(ctx, "pnew", false)
	if err != nil || !sameKey(t, k1, k4) {
		t.Fatalf("another keyring: %v", err)
	}

	// The bucket holds the data key only wrapped by the subject's transit
	// key, and neither holds more than the pseudonym.
	e, err := kv.Get(ctx, "pnew")
	if err != nil {
		t.Fatal(err)
	}
	var ent map[string]any
	if err := json.Unmarshal(e.Value(), &ent); err != nil {
		t.Fatal(err)
	}
	if w, _ := ent["wrapped"].(string); !strings.HasPrefix(w, "vault:v1:") || len(ent) != 2 {
		t.Fatalf("key entry %s", e.Value())
	}
	if ok, err := vc.KeyExists(ctx, pii.SubjectKeyName("pnew")); !ok || err != nil {
		t.Fatalf("transit key %s: %v %v", pii.SubjectKeyName("pnew"), ok, err)
	}
}

// Goroutines of one process asking for the same new subject make one key.
func TestKeyringConcurrentGetInOneProcess(t *testing.T) {
	ctx := context.Background()
	kv, v := startNATS(t), startVault(t)
	vc := v.client(t)
	kr := pii.NewKeyring(vc, kv, kv.stream, ttl, time.Now)
	const n = 8
	got := make([]*pii.SubjectKey, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			got[i], errs[i] = kr.Get(ctx, "pconc", true)
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || got[i] != got[0] {
			t.Fatalf("Get %d: %v (same handle: %v)", i, errs[i], got[i] == got[0])
		}
	}
	if c := vc.Calls(); c != 2 {
		t.Fatalf("%d Vault calls for one new subject, want 2", c)
	}
}

// Two processes creating the same new subject at once end up with one key:
// the bucket's create decides, and the loser unwraps the winner's key.
func TestKeyringConcurrentGetAcrossProcesses(t *testing.T) {
	ctx := context.Background()
	kv, v := startNATS(t), startVault(t)
	a := pii.NewKeyring(v.client(t), kv, kv.stream, ttl, time.Now)
	b := pii.NewKeyring(v.client(t), kv, kv.stream, ttl, time.Now)
	for i := range 10 {
		p := fmt.Sprintf("prace%d", i)
		var ka, kb *pii.SubjectKey
		var ea, eb error
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); <-start; ka, ea = a.Get(ctx, p, true) }()
		go func() { defer wg.Done(); <-start; kb, eb = b.Get(ctx, p, true) }()
		close(start)
		wg.Wait()
		if ea != nil || eb != nil {
			t.Fatalf("%s: %v, %v", p, ea, eb)
		}
		if !sameKey(t, ka, kb) || !sameKey(t, kb, ka) {
			t.Fatalf("%s: two processes hold different keys for one subject", p)
		}
		// And both are the key any later process sees.
		kc, err := pii.NewKeyring(v.client(t), kv, kv.stream, ttl, time.Now).Get(ctx, p, false)
		if err != nil || !sameKey(t, ka, kc) {
			t.Fatalf("%s: a third process sees another key: %v", p, err)
		}
	}
}

func TestKeyringDestroy(t *testing.T) {
	ctx := context.Background()
	kv, v := startNATS(t), startVault(t)
	vc := v.client(t)
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	kr := pii.NewKeyring(vc, kv, kv.stream, ttl, clk.Now)
	other := pii.NewKeyring(v.client(t), kv, kv.stream, ttl, clk.Now)
	if _, err := kr.Get(ctx, "pgone", true); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Get(ctx, "pgone", false); err != nil {
		t.Fatal(err)
	}

	if err := kr.Destroy(ctx, "pgone"); err != nil {
		t.Fatal(err)
	}
	if err := kr.Destroy(ctx, "pgone"); err != nil {
		t.Fatalf("second Destroy: %v", err)
	}
	if ok, err := vc.KeyExists(ctx, pii.SubjectKeyName("pgone")); ok || err != nil {
		t.Fatalf("transit key still exists: %v %v", ok, err)
	}
	for _, create := range []bool{false, true} {
		if _, err := kr.Get(ctx, "pgone", create); !errors.Is(err, pii.ErrErased) {
			t.Fatalf("Get(create=%v) after Destroy = %v, want ErrErased", create, err)
		}
	}
	// A fresh process, and one whose cached key has run out, see the
	// erasure too: no process can get the key back.
	fresh := pii.NewKeyring(v.client(t), kv, kv.stream, ttl, clk.Now)
	if _, err := fresh.Get(ctx, "pgone", true); !errors.Is(err, pii.ErrErased) {
		t.Fatalf("fresh keyring Get = %v, want ErrErased", err)
	}
	clk.Advance(ttl)
	if _, err := other.Get(ctx, "pgone", false); !errors.Is(err, pii.ErrErased) {
		t.Fatalf("other keyring after its TTL = %v, want ErrErased", err)
	}
	if _, err := v.client(t).Unwrap(ctx, pii.SubjectKeyName("pgone"), "vault:v1:AAAA"); !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("unwrap with the destroyed key = %v", err)
	}

	// Destroying a subject that never had a key leaves a tombstone, so one
	// cannot be made later.
	if err := kr.Destroy(ctx, "pnever"); err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Get(ctx, "pnever", true); !errors.Is(err, pii.ErrErased) {
		t.Fatalf("Get after destroying a keyless subject = %v, want ErrErased", err)
	}
}
