package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"testing/fstest"
	"time"

	"github.com/nats-io/nats.go"

	"custos.dev/ledger"
	"custos.dev/ledger/event"
	"custos.dev/ledger/keys/keystest"
	"custos.dev/ledger/natstest"
	"custos.dev/ledger/policy"
	"custos.dev/ledger/verify"
)

// A policy that allows everything but transfers to the US.
const rules = `package custos.decision

decision := {"allow": false, "reasons": [{"code": "DESTINATION_NOT_ALLOWED", "message": "US"}], "obligations": []} if {
	input.event.data.to_region == "US"
} else := {"allow": true, "reasons": [], "obligations": []}

test_us if not decision.allow with input as {"event": {"data": {"to_region": "US"}}}
`

type env struct {
	nc     *nats.Conn
	keys   *keystest.Server
	engine *policy.Engine
	index  string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	nc := natstest.Connect(t)
	set, err := policy.Load(context.Background(), fstest.MapFS{"decision.rego": {Data: []byte(rules)}})
	if err != nil {
		t.Fatal(err)
	}
	return &env{nc: nc, keys: keystest.Start(t), engine: policy.NewEngine(set), index: t.TempDir()}
}

func (e *env) open(t testing.TB) *ledger.Ledger {
	t.Helper()
	l, err := ledger.Open(context.Background(), ledger.Options{
		Conn: e.nc, Keys: e.keys.Client(t), Policy: e.engine, Origin: "custos.test/ledger",
		CheckpointInterval: time.Hour, Integrate: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func ev(t testing.TB, typ, id string, data string) *event.Event {
	t.Helper()
	body := fmt.Sprintf(`{"specversion":"1.0","type":%q,"source":"https://shop.example","id":%q,"time":"2026-11-29T09:00:00Z","subject":"user-1","datacontenttype":"application/json","data":%s}`, typ, id, data)
	e, err := event.Decode([]byte(body), time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Appends, duplicates, denials, the follower, checkpoint signing and a
// reopen, against a real in-process NATS server and the dev key server.
func TestAppendFollowSign(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	l := e.open(t)
	reg := ev(t, "privacy.subject.registered", "reg-1", `{"residence":"CN","age":30}`)
	rc, err := l.Append(ctx, reg)
	if err != nil || rc.Seq != 1 || rc.Duplicate {
		t.Fatalf("append: %+v %v", rc, err)
	}
	again, err := l.Append(ctx, reg)
	if err != nil || !again.Duplicate || again.Seq != 1 {
		t.Fatalf("re-send: %+v %v", again, err)
	}
	us := ev(t, "privacy.data.transferred", "tr-1", `{"transfer_id":"t","recipient":"acme","from_region":"CN","to_region":"US","categories":["identity.contact"],"purpose":"security","mechanism":"standard_contract"}`)
	var denied *ledger.DeniedError
	if _, err := l.Append(ctx, us); !errors.As(err, &denied) || denied.Seq != 2 {
		t.Fatalf("denied transfer: %v", err)
	}
	if _, err := l.Append(ctx, us); !errors.As(err, &denied) || denied.Seq != 2 {
		t.Fatalf("re-sent denial: %v; want the first denial, at 2", err)
	}
	p := l.Pseudonym("user-1")
	if s := l.View().Subject(p); s == nil || s.LastSeq != 2 || s.Denials != 1 || !s.Registered {
		t.Fatalf("state %+v", s)
	}
	// The receipt comes once the record is committed and in the subject's
	// state; the tree grows when the follower reads it back.
	if err := l.WaitApplied(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := l.SignNow(ctx); err != nil {
		t.Fatal(err)
	}
	if cp := l.Latest(); cp == nil || cp.Size != 2 {
		t.Fatalf("checkpoint %+v", cp)
	}
	rep, err := verify.Run(ctx, ledger.NewReader(l.JetStream()).Source(), verify.Options{VerifierKey: l.VerifierKey()})
	if err != nil || !rep.OK || rep.Events != 2 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	l = e.open(t)
	defer l.Close(ctx)
	if s := l.View().Subject(p); s == nil || s.LastSeq != 2 || s.Denials != 1 {
		t.Fatalf("state after reopening %+v", s)
	}
	if again, err := l.Append(ctx, reg); err != nil || !again.Duplicate {
		t.Fatalf("re-send after reopening: %+v %v", again, err)
	}
}

// BenchmarkAppend is the full in-process path of one event: decode is left
// out, decision, sealing, commit (fsync per message, JetStream's default
// here) and the follower's fold are in.
func BenchmarkAppend(b *testing.B) {
	ctx := context.Background()
	e := newEnv(b)
	l := e.open(b)
	defer l.Close(ctx)
	events := make([]*event.Event, b.N)
	for i := range events {
		events[i] = ev(b, "privacy.subject.registered", fmt.Sprintf("reg-%d", i), `{"residence":"CN","age":30}`)
		events[i].Subject = fmt.Sprintf("user-%d", i%500)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range events {
		if _, err := l.Append(ctx, events[i]); err != nil {
			b.Fatal(err)
		}
	}
}
