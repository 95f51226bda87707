package natsd_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"custos.dev/ledger"
	"custos.dev/services/natsd"
)

// The embedded server's auditor cannot make the server write into the
// ledger's account: replies and deliveries it asks for land in AUDIT, where
// nothing captures them.
func TestEmbeddedAuditorCannotInjectIntoLedger(t *testing.T) {
	srv, cjs, ctx := startLedgerServer(t)
	ls, cs, err := ledger.EnsureStreams(ctx, cjs, ledger.StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cjs.Publish(ctx, "ledger.g._.x", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := srv.EnsureAuditMirrors(ctx); err != nil {
		t.Fatal(err)
	}
	an, err := srv.Auditor.Connect("auditor")
	if err != nil {
		t.Fatal(err)
	}
	defer an.Close()
	// A JetStream API request answered on a ledger subject.
	for _, reply := range []string{"ledger.g._.injected", "checkpoints.ledger"} {
		if err := an.PublishRequest("$JS.API.INFO", reply, nil); err != nil {
			t.Fatal(err)
		}
	}
	// A push consumer delivering into the ledger's subjects.
	ajs, _ := jetstream.New(an)
	_, _ = ajs.CreateOrUpdateConsumer(ctx, "LEDGER", jetstream.ConsumerConfig{DeliverSubject: "checkpoints.ledger"})
	if err := an.Flush(); err != nil {
		t.Fatal(err)
	}
	// The auditor's own reads work, through the mirror.
	waitUntil(t, func() bool {
		s, err := ajs.Stream(ctx, "LEDGER")
		return err == nil && s.CachedInfo().State.Msgs == 1
	})
	// A round trip on the custos connection orders after the auditor's
	// requests were processed by the server.
	if _, err := cjs.AccountInfo(ctx); err != nil {
		t.Fatal(err)
	}
	li, _ := ls.Info(ctx)
	ci, _ := cs.Info(ctx)
	if li.State.Msgs != 1 || ci.State.Msgs != 0 {
		t.Fatalf("ledger %d msgs (want 1), checkpoints %d (want 0): the auditor wrote into the ledger account", li.State.Msgs, ci.State.Msgs)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 20s")
		}
		<-tick.C
	}
}

// A listen address in use is reported at once, naming it.
func TestStartReportsAnAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	started := time.Now()
	_, err = natsd.Start(natsd.Config{Dir: t.TempDir(), Listen: ln.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("start on a port in use: %v", err)
	}
	if took := time.Since(started); took > 5*time.Second {
		t.Errorf("the refusal took %s", took)
	}
}

// An auditor can list its account's streams (`nats stream ls`), and the
// consumers it may create on its mirrors are bounded.
func TestAuditorListsStreamsWithBoundedConsumers(t *testing.T) {
	srv, cjs, ctx := startLedgerServer(t)
	if _, _, err := ledger.EnsureStreams(ctx, cjs, ledger.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := srv.EnsureAuditMirrors(ctx); err != nil {
		t.Fatal(err)
	}
	an, err := srv.Auditor.Connect("auditor")
	if err != nil {
		t.Fatal(err)
	}
	defer an.Close()
	ajs, _ := jetstream.New(an)
	var names []string
	lister := ajs.StreamNames(ctx)
	for n := range lister.Name() {
		names = append(names, n)
	}
	if lister.Err() != nil || !slices.Contains(names, ledger.StreamName) || !slices.Contains(names, ledger.CheckpointStreamName) {
		t.Fatalf("auditor's stream names: %v, %v", names, lister.Err())
	}
	s, err := ajs.Stream(ctx, ledger.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < natsd.AuditMaxConsumers; i++ {
		if _, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: fmt.Sprintf("d%d", i)}); err != nil {
			t.Fatalf("consumer %d: %v", i, err)
		}
	}
	if _, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "one-too-many"}); err == nil {
		t.Fatalf("an auditor created consumer %d on its mirror", natsd.AuditMaxConsumers+1)
	}
}

// startLedgerServer starts the embedded server and returns it with Custos's
// JetStream context and a context bounding the test.
func startLedgerServer(t *testing.T) (*natsd.Server, jetstream.JetStream, context.Context) {
	t.Helper()
	srv, err := natsd.Start(natsd.Config{Dir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	cn, err := srv.Custos.Connect("custos")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cn.Close)
	cjs, _ := jetstream.New(cn)
	return srv, cjs, ctx
}
