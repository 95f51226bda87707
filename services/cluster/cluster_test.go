package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"custos.dev/ledger"
	"custos.dev/services/app"
)

// Two Custos processes on one three-node cluster with R3 streams: appends
// through both, read-your-writes across them, one fork-free checkpoint
// sequence that both integrators extend, and `custos verify` over NATS.
func TestClusterTwoProcesses(t *testing.T) {
	c := startCluster(t, "region:cn", "region:cn", "region:cn")
	ks := startKeyServer(t)
	a := startApp(t, c, ks, "custos-a")
	b := startApp(t, c, ks, "custos-b")
	js := c.connect(c.auditor)

	for _, name := range []string{ledger.StreamName, ledger.CheckpointStreamName} {
		info := streamInfo(t, js, name)
		if info.Config.Replicas != 3 || len(members(info)) != 3 {
			t.Fatalf("%s: replicas %d, members %v; want 3", name, info.Config.Replicas, members(info))
		}
	}
	if a.Ledger.VerifierKey() != b.Ledger.VerifierKey() {
		t.Fatal("the two processes sign with different keys")
	}
	vkey := a.Ledger.VerifierKey()

	// The token store is shared: a token made through A works on B.
	tok := newAPI(a.URL, a.AdminToken).createToken(t, "emitter", source)
	waitFor(t, 10*time.Second, "B to learn A's token", func() bool {
		_, err := b.Tokens.Check(tok)
		return err == nil
	})
	viaA, viaB := newAPI(a.URL, tok), newAPI(b.URL, tok)

	acked := map[string]uint64{}
	for i := 0; i < 20; i++ {
		via := viaA
		if i%2 == 1 {
			via = viaB
		}
		id := fmt.Sprintf("two-reg-%d", i)
		r := via.mustPost(t, registration(id, fmt.Sprintf("two-user-%d", i)), http.StatusCreated)
		acked[id] = r.seq()
	}

	// A withdrawal through A is in force for B's very next decision, and a
	// grant through B for A's.
	s := "two-subject"
	acked["rw-reg"] = viaA.mustPost(t, registration("rw-reg", s), http.StatusCreated).seq()
	consent := func(id string) map[string]any {
		return ev("privacy.consent.granted", id, s, map[string]any{
			"consent_id": id, "notice_version": "1.0", "destinations": []string{"SG"},
			"purposes": []string{"service_provision", "customer_support"}, "categories": []string{"identity.contact", "identity.basic"},
		})
	}
	transfer := func(id string) map[string]any {
		return ev("privacy.data.transferred", id, s, map[string]any{
			"transfer_id": id, "recipient": "acme-sg", "from_region": "CN", "to_region": "SG",
			"categories": []string{"identity.contact"}, "purpose": "customer_support", "mechanism": "standard_contract",
		})
	}
	acked["rw-c1"] = viaB.mustPost(t, consent("rw-c1"), http.StatusCreated).seq()
	acked["rw-w1"] = viaA.mustPost(t, ev("privacy.consent.withdrawn", "rw-w1", s, map[string]any{"consent_id": "rw-c1"}), http.StatusCreated).seq()
	denied := viaB.mustPost(t, transfer("rw-t1"), http.StatusForbidden)
	if !slices.Contains(denied.reasons(), "CONSENT_WITHDRAWN") {
		t.Fatalf("transfer after withdrawal through the other process: reasons %v, want CONSENT_WITHDRAWN", denied.reasons())
	}
	acked["rw-c2"] = viaB.mustPost(t, consent("rw-c2"), http.StatusCreated).seq()
	acked["rw-t2"] = viaA.mustPost(t, transfer("rw-t2"), http.StatusCreated).seq()

	// One integrator signs at a time (the lease); the other stands by and
	// takes over, extending the same checkpoint sequence, once the first
	// process stops.
	var signer, standby *proc
	waitFor(t, 20*time.Second, "exactly one integrator", func() bool {
		switch {
		case a.Ledger.IsIntegrator() && !b.Ledger.IsIntegrator():
			signer, standby = a, b
		case b.Ledger.IsIntegrator() && !a.Ledger.IsIntegrator():
			signer, standby = b, a
		default:
			return false
		}
		return true
	})
	_, last := storedIDs(t, js)
	waitFor(t, 20*time.Second, "a checkpoint of the whole tree", func() bool { return latestSize(t, js, vkey) >= int64(last) })
	before := signedBy(t, standby.Registry)
	signer.stop()
	via := newAPI(standby.URL, tok)
	for i := 0; i < 3; i++ {
		id := fmt.Sprintf("two-after-%d", i)
		r := via.mustPost(t, registration(id, "two-after-user"), http.StatusCreated)
		acked[id] = r.seq()
		waitFor(t, 20*time.Second, "the standby to sign a checkpoint covering "+id, func() bool {
			return latestSize(t, js, vkey) >= int64(r.seq())
		})
	}
	if !standby.Ledger.IsIntegrator() || signedBy(t, standby.Registry) <= before {
		t.Fatal("the standby did not take over signing")
	}

	stored, _ := storedIDs(t, js)
	sizes := checkCheckpoints(t, js, vkey)
	got := count(acked, stored)
	t.Logf("two processes: %v; %d checkpoints (A signed %v, B signed %v), sizes %v", got, len(sizes),
		signedBy(t, a.Registry), signedBy(t, b.Registry), sizes)
	if got.lost != 0 || got.duplicated != 0 || got.wrongSeq != 0 {
		t.Fatalf("ledger does not match the receipts: %v", got)
	}
	verifyInProcess(t, c.auditCreds, vkey)
}

// With placement tags the ledger streams and the buckets holding personal
// data live only on servers carrying them; a tag no server has stops
// startup with an error naming the cause.
func TestClusterPlacement(t *testing.T) {
	c := startCluster(t, "region:cn", "region:cn", "region:cn", "region:sg")
	ks := startKeyServer(t)

	logs := &syncBuffer{}
	dumpOnFailure(t, "custos-xx", logs)
	cfg := appConfig(t, c, ks, logs)
	cfg.PlacementTags = []string{"region:xx"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	started := time.Now()
	bad, err := app.Start(ctx, cfg)
	if err == nil {
		bad.Close(context.Background())
		t.Fatal("started with a placement tag no server has")
	}
	t.Logf("placement region:xx refused after %v: %v", time.Since(started).Round(time.Millisecond), err)
	if msg := err.Error(); !strings.Contains(msg, ledger.StreamName) || !strings.Contains(msg, "region:xx") {
		t.Fatalf("startup error does not name the stream and the unmatched tag: %v", err)
	}

	a := startApp(t, c, ks, "custos-cn", func(cfg *app.Config) { cfg.PlacementTags = []string{"region:cn"} })
	em := newAPI(a.URL, newAPI(a.URL, a.AdminToken).createToken(t, "emitter", source))
	em.mustPost(t, registration("placed-1", "placed-user"), http.StatusCreated)

	js := c.connect(c.auditor)
	jsc := c.connect(c.custos)
	tagOf := map[string]string{}
	for _, n := range c.nodes {
		tagOf[n.name] = n.tag
	}
	for _, name := range []string{ledger.StreamName, ledger.CheckpointStreamName, "KV_custos_pii", "KV_custos_subject_keys", "KV_custos_meta"} {
		src := js
		if strings.HasPrefix(name, "KV_") {
			src = jsc
		}
		info := streamInfo(t, src, name)
		ms := members(info)
		if len(ms) != 3 {
			t.Fatalf("%s: members %v, want 3", name, ms)
		}
		for _, m := range ms {
			if tagOf[m] != "region:cn" {
				t.Fatalf("%s has a replica on %s (%s); placement region:cn", name, m, tagOf[m])
			}
		}
		if info.Config.Placement == nil || !slices.Contains(info.Config.Placement.Tags, "region:cn") {
			t.Fatalf("%s: placement %+v, want tags [region:cn]", name, info.Config.Placement)
		}
		t.Logf("%s placed on %v", name, ms)
	}
	// The token bucket holds no personal data; report where it landed.
	info := streamInfo(t, jsc, "KV_custos_tokens")
	t.Logf("KV_custos_tokens (no placement requested by auth.Open) placed on %v", members(info))
}

// Shutting down the LEDGER stream leader while clients append through two
// processes: appends resume under a new leader, clients that retry the same
// event on 503 get one receipt each, nothing acknowledged is lost, nothing
// is stored twice, and the ledger verifies.
func TestClusterLeaderFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("leader failover waits for a RAFT election")
	}
	c := startCluster(t, "region:cn", "region:cn", "region:cn")
	ks := startKeyServer(t)
	a := startApp(t, c, ks, "custos-a")
	b := startApp(t, c, ks, "custos-b")
	js := c.connect(c.auditor)
	tok := newAPI(a.URL, a.AdminToken).createToken(t, "emitter", source)
	waitFor(t, 10*time.Second, "B to learn A's token", func() bool {
		_, err := b.Tokens.Check(tok)
		return err == nil
	})
	vias := []api{newAPI(a.URL, tok), newAPI(b.URL, tok)}

	const clients, perClient, killAfter = 4, 60, 40
	var (
		mu       sync.Mutex
		acked    = map[string]uint64{}
		ackTimes []time.Time
		resumed  time.Duration // first acknowledgement of an event first sent after the stop
		retried  atomic.Int64
		total    atomic.Int64
		killedAt atomic.Int64 // unix nanoseconds; 0 before the stop
		causes   = map[string]int{}
	)
	reached := make(chan struct{})
	var once sync.Once
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for cl := 0; cl < clients; cl++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			via := vias[cl%2]
			for i := 0; i < perClient; i++ {
				id := fmt.Sprintf("fo-%d-%d", cl, i)
				sent := time.Now().UnixNano()
				r, tries, err := via.sendRetrying(ctx, registration(id, "fo-user-"+id), 45*time.Second, func(cause string) {
					mu.Lock()
					causes[cause]++
					mu.Unlock()
				})
				if err != nil {
					errs <- fmt.Errorf("%s: %w", id, err)
					return
				}
				if r.Status != http.StatusCreated && r.Status != http.StatusOK {
					errs <- fmt.Errorf("%s: %d %s", id, r.Status, r.Raw)
					return
				}
				retried.Add(int64(tries - 1))
				now := time.Now()
				mu.Lock()
				acked[id] = r.seq()
				ackTimes = append(ackTimes, now)
				if k := killedAt.Load(); k != 0 && sent > k && resumed == 0 {
					resumed = now.Sub(time.Unix(0, k))
				}
				mu.Unlock()
				if total.Add(1) == killAfter {
					once.Do(func() { close(reached) })
				}
			}
		}()
	}
	select {
	case <-reached:
	case <-ctx.Done():
		t.Fatal("appends did not reach the kill point")
	}
	leader := streamInfo(t, js, ledger.StreamName).Cluster.Leader
	// The harshest case: the stopped server also leads every other stream
	// an append touches (subject keys, sealed values, checkpoints, tokens).
	jsc := c.connect(c.custos)
	for _, name := range []string{ledger.CheckpointStreamName, "KV_custos_subject_keys", "KV_custos_pii", "KV_custos_meta", "KV_custos_tokens"} {
		moveLeader(t, jsc, name, leader)
	}
	stopped := time.Now()
	killedAt.Store(stopped.UnixNano())
	c.stop(c.node(leader))
	ackedAtKill := total.Load()
	t.Logf("stopped LEDGER stream leader %s (also leading the checkpoint stream and every KV bucket) after %d acknowledged appends", leader, ackedAtKill)
	var newLeader string
	waitFor(t, 30*time.Second, "a new LEDGER stream leader", func() bool {
		info := streamInfo(t, js, ledger.StreamName)
		newLeader = info.Cluster.Leader
		return newLeader != leader
	})
	electedAfter := time.Since(stopped)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	// The longest time no client got an acknowledgement bounds the outage.
	slices.SortFunc(ackTimes, func(x, y time.Time) int { return x.Compare(y) })
	var stall time.Duration
	for i := 1; i < len(ackTimes); i++ {
		stall = max(stall, ackTimes[i].Sub(ackTimes[i-1]))
	}
	stored, last := storedIDs(t, js)
	got := count(acked, stored)
	for cause, n := range causes {
		t.Logf("retried %d× after: %s", n, cause)
	}
	t.Logf("leader failover: %v; %d retries; new leader %s elected %v after the stop; longest stall between acknowledgements %v; first acknowledgement of an event sent after the stop %v",
		got, retried.Load(), newLeader, electedAfter.Round(time.Millisecond), stall.Round(time.Millisecond), resumed.Round(time.Millisecond))
	if got.acknowledged != clients*perClient {
		t.Fatalf("%d of %d appends acknowledged", got.acknowledged, clients*perClient)
	}
	if got.lost != 0 || got.duplicated != 0 || got.wrongSeq != 0 {
		t.Fatalf("ledger does not match the receipts: %v", got)
	}
	if stall > 30*time.Second {
		t.Fatalf("appends stalled for %v", stall)
	}
	waitFor(t, 30*time.Second, "a checkpoint of the whole tree after failover", func() bool {
		return latestSize(t, js, a.Ledger.VerifierKey()) == int64(last)
	})
	checkCheckpoints(t, js, a.Ledger.VerifierKey())
	verifyInProcess(t, c.auditCreds, a.Ledger.VerifierKey())
}

// moveLeader makes server the leader of a stream through the stepdown API
// with a preferred placement, and waits until it is.
func moveLeader(t *testing.T, js jetstream.JetStream, stream, server string) {
	t.Helper()
	waitFor(t, 20*time.Second, stream+" led by "+server, func() bool {
		if streamInfo(t, js, stream).Cluster.Leader == server {
			return true
		}
		req, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": server}})
		_, _ = js.Conn().Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, req, 2*time.Second)
		return streamInfo(t, js, stream).Cluster.Leader == server
	})
}
