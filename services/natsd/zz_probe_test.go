package natsd_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"custos.dev/ledger"
)

func TestProbeAuditorPushConsumer(t *testing.T) {
	setDeployEnv(t)
	ns := startFromConfig(t, "ledger-node.conf", func(o *server.Options) { o.LeafNode.Port = freePort(t) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	custos := connect(t, ns.ClientURL(), "custos", deployEnv["CUSTOS_NATS_PASSWORD"])
	auditor := connect(t, ns.ClientURL(), "auditor", deployEnv["AUDITOR_NATS_PASSWORD"])
	if _, _, err := ledger.EnsureStreams(ctx, custos.js, ledger.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	custos.js.Publish(ctx, "ledger.x", []byte("a"))
	custos.js.Publish(ctx, "ledger.y", []byte("b"))
	for _, deliver := range []string{"checkpoints.ledger", "ledger.z", "$KV.custos_pii.evil"} {
		_, err := auditor.js.CreateOrUpdatePushConsumer(ctx, "LEDGER", jetstream.ConsumerConfig{Name: "evil" + string(rune('a'+len(deliver)%26)), DeliverSubject: deliver, AckPolicy: jetstream.AckNonePolicy})
		t.Logf("deliver %s: err %v", deliver, err)
	}
	time.Sleep(500 * time.Millisecond)
	for _, n := range []string{"LEDGER", "LEDGER_CHECKPOINTS"} {
		s, _ := custos.js.Stream(ctx, n)
		t.Logf("%s msgs %d", n, s.CachedInfo().State.Msgs)
	}
}
