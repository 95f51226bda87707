package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"custos.dev/ledger"
	"custos.dev/ledger/atomicfile"
	"custos.dev/ledger/checkpoint"
	"custos.dev/ledger/keys/keyserver"
	"custos.dev/services/app"
	"custos.dev/services/cli"
	"custos.dev/services/natsd"
)

// waitFor polls cond every 10 ms until it holds or limit passes: a
// condition wait, never a fixed sleep.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		<-tick.C
	}
}

// syncBuffer is a log sink read after the writers are done or concurrently.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// dumpOnFailure logs the tail of a captured log when the test failed.
func dumpOnFailure(t *testing.T, name string, logs interface{ String() string }) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		s := logs.String()
		if len(s) > 16<<10 {
			s = "...\n" + s[len(s)-16<<10:]
		}
		t.Logf("--- %s log ---\n%s", name, s)
	})
}

// node is one in-process NATS server of a test cluster.
type node struct {
	name string
	tag  string
	ns   *server.Server
	up   bool
}

// natsCluster is an in-process JetStream cluster on loopback: every node
// with its own store, fsync on every message, routes to all the others, and
// the same two users and permissions as the embedded server.
type natsCluster struct {
	t           *testing.T
	nodes       []*node
	custosCreds string // path of {"url","user","password"} for custos
	auditCreds  string // the same for the read-only auditor
	custos      natsd.Credentials
	auditor     natsd.Credentials
}

// startCluster starts one node per tag (e.g. "region:cn") and returns once
// a meta leader exists and knows every node.
func startCluster(t *testing.T, tags ...string) *natsCluster {
	t.Helper()
	dir := t.TempDir()
	c := &natsCluster{
		t:       t,
		custos:  natsd.Credentials{User: "custos", Password: "custos-" + strconv.FormatInt(time.Now().UnixNano(), 36)},
		auditor: natsd.Credentials{User: "auditor", Password: "auditor-" + strconv.FormatInt(time.Now().UnixNano(), 36)},
	}
	// Each node listens on ports the kernel picks and routes to the nodes
	// started before it; route gossip completes the mesh. No port is
	// guessed, so none can be taken in between.
	var routes []string
	for i, tag := range tags {
		name := fmt.Sprintf("n%d-%s", i+1, strings.ReplaceAll(tag, ":", "-"))
		opts := &server.Options{
			ServerName:         name,
			Host:               "127.0.0.1",
			Port:               server.RANDOM_PORT,
			JetStream:          true,
			StoreDir:           filepath.Join(dir, name),
			SyncAlways:         true,
			NoSigs:             true,
			NoLog:              true,
			MaxPayload:         8 << 20,
			JetStreamMaxMemory: 64 << 20,
			JetStreamMaxStore:  1 << 30,
			Tags:               []string{tag},
			Cluster:            server.ClusterOpts{Name: "custos-test", Host: "127.0.0.1", Port: server.RANDOM_PORT},
			Routes:             server.RoutesFromStr(strings.Join(routes, ",")),
			Users: []*server.User{
				{Username: c.custos.User, Password: c.custos.Password, Permissions: natsd.CustosPermissions()},
				{Username: c.auditor.User, Password: c.auditor.Password, Permissions: natsd.AuditorPermissions()},
			},
		}
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("nats node %s: %v", name, err)
		}
		ns.Start()
		n := &node{name: name, tag: tag, ns: ns, up: true}
		c.nodes = append(c.nodes, n)
		t.Cleanup(func() { c.stop(n) })
		if !ns.ReadyForConnections(20 * time.Second) {
			t.Fatalf("nats node %s not ready", name)
		}
		routes = append(routes, "nats://"+ns.ClusterAddr().String())
	}
	waitFor(t, 30*time.Second, "a JetStream meta leader that knows every node", func() bool {
		leader := c.metaLeader()
		if leader == nil || len(leader.ns.JetStreamClusterPeers()) != len(c.nodes) {
			return false
		}
		for _, n := range c.nodes {
			if !n.ns.JetStreamIsCurrent() {
				return false
			}
		}
		return true
	})
	c.custos.URL, c.auditor.URL = c.URLs(), c.URLs()
	c.custosCreds, c.auditCreds = filepath.Join(dir, "nats-custos.json"), filepath.Join(dir, "nats-auditor.json")
	for path, cr := range map[string]natsd.Credentials{c.custosCreds: c.custos, c.auditCreds: c.auditor} {
		b, _ := json.Marshal(cr)
		if err := atomicfile.Write(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (c *natsCluster) metaLeader() *node {
	for _, n := range c.nodes {
		if n.up && n.ns.JetStreamIsLeader() {
			return n
		}
	}
	return nil
}

// URLs is every node's client URL, comma-separated, as --nats-url takes it.
func (c *natsCluster) URLs() string {
	var us []string
	for _, n := range c.nodes {
		us = append(us, n.ns.ClientURL())
	}
	return strings.Join(us, ",")
}

func (c *natsCluster) node(name string) *node {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	c.t.Fatalf("no node named %q", name)
	return nil
}

func (c *natsCluster) stop(n *node) {
	if !n.up {
		return
	}
	n.up = false
	n.ns.Shutdown()
	n.ns.WaitForShutdown()
}

// connect opens a JetStream connection with the given credentials.
func (c *natsCluster) connect(cr natsd.Credentials) jetstream.JetStream {
	c.t.Helper()
	nc, err := cr.Connect("custos-cluster-test", nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	return js
}

// streamInfo reads a stream's info, retrying while the stream has no
// leader to answer.
func streamInfo(t *testing.T, js jetstream.JetStream, name string) *jetstream.StreamInfo {
	t.Helper()
	var info *jetstream.StreamInfo
	var last error
	waitFor(t, 30*time.Second, "stream info of "+name, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, name)
		if err == nil {
			info, err = s.Info(ctx)
		}
		last = err
		return err == nil && info.Cluster != nil && info.Cluster.Leader != ""
	})
	if info == nil {
		t.Fatalf("stream info %s: %v", name, last)
	}
	return info
}

// members is the stream's leader followed by its replicas.
func members(info *jetstream.StreamInfo) []string {
	out := []string{info.Cluster.Leader}
	for _, r := range info.Cluster.Replicas {
		out = append(out, r.Name)
	}
	return out
}

// keyServer is one embedded dev key server (Vault transit API) that every
// Custos process of a test shares, as they would share one Vault.
type keyServer struct {
	addr, token string
}

func startKeyServer(t *testing.T) keyServer {
	t.Helper()
	ks, err := keyserver.Open(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	addr, err := ks.ListenAndServe(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = ks.Shutdown(ctx)
	})
	return keyServer{addr: addr, token: ks.RootToken()}
}

// appConfig is a Custos process on the cluster: R3 streams, the shared key
// server, a fast integrator.
func appConfig(t *testing.T, c *natsCluster, ks keyServer, logs io.Writer) app.Config {
	return app.Config{
		DataDir: t.TempDir(), Listen: "127.0.0.1:0",
		NATSURL: c.URLs(), NATSCreds: c.custosCreds, Replicas: 3,
		VaultAddr: ks.addr, VaultToken: ks.token,
		CheckpointInterval: 100 * time.Millisecond, RetentionInterval: time.Hour, RatePerToken: 100000,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// proc is a Custos process started in this test process; stop may be
// called early and again at cleanup.
type proc struct {
	*app.App
	once sync.Once
}

func (p *proc) stop() {
	p.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
}

func startApp(t *testing.T, c *natsCluster, ks keyServer, name string, mods ...func(*app.Config)) *proc {
	t.Helper()
	logs := &syncBuffer{}
	dumpOnFailure(t, name, logs)
	cfg := appConfig(t, c, ks, logs)
	for _, m := range mods {
		m(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, err := app.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{App: a}
	t.Cleanup(p.stop)
	return p
}

// signedBy is how many checkpoints this process's integrator signed.
func signedBy(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "custos_checkpoints_signed_total" {
			var n float64
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
			return n
		}
	}
	return 0
}

// api is one HTTP API endpoint with one bearer token.
type api struct {
	base, token string
	hc          *http.Client
}

func newAPI(base, token string) api {
	return api{base: strings.TrimRight(base, "/"), token: token, hc: &http.Client{Timeout: 15 * time.Second}}
}

// reply is a decoded JSON answer.
type reply struct {
	Status int
	Body   map[string]any
	Raw    []byte
}

func (r reply) seq() uint64 {
	f, _ := r.Body["seq"].(float64)
	return uint64(f)
}

func (r reply) leafHash() string {
	s, _ := r.Body["leaf_hash"].(string)
	return s
}

func (r reply) reasons() []string {
	d, _ := r.Body["decision"].(map[string]any)
	rs, _ := d["reasons"].([]any)
	var out []string
	for _, x := range rs {
		if m, ok := x.(map[string]any); ok {
			c, _ := m["code"].(string)
			out = append(out, c)
		}
	}
	return out
}

// do sends one request; a transport error (timeout, refused connection) is
// returned as err so callers can decide to retry.
func (a api) do(ctx context.Context, method, path, contentType string, body []byte) (reply, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, bytes.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	res, err := a.hc.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return reply{}, err
	}
	out := reply{Status: res.StatusCode, Raw: raw}
	_ = json.Unmarshal(raw, &out.Body)
	return out, nil
}

func (a api) post(ctx context.Context, e map[string]any) (reply, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return reply{}, err
	}
	return a.do(ctx, http.MethodPost, "/v1/events", "application/cloudevents+json", b)
}

// mustPost posts once and fails unless the answer has the wanted status.
func (a api) mustPost(t *testing.T, e map[string]any, want int) reply {
	t.Helper()
	r, err := a.post(context.Background(), e)
	if err != nil {
		t.Fatalf("%s %s: %v", e["type"], e["id"], err)
	}
	if r.Status != want {
		t.Fatalf("%s %s: want %d, got %d %s", e["type"], e["id"], want, r.Status, r.Raw)
	}
	return r
}

// token creates a token through the admin API.
func (a api) createToken(t *testing.T, role, source string) string {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"role": role, "source": source})
	r, err := a.do(context.Background(), http.MethodPost, "/v1/tokens", "application/json", b)
	if err != nil || r.Status/100 != 2 {
		t.Fatalf("create %s token: %v %d %s", role, err, r.Status, r.Raw)
	}
	tok, _ := r.Body["token"].(string)
	if tok == "" {
		t.Fatalf("create %s token: no token in %s", role, r.Raw)
	}
	return tok
}

// sendRetrying re-sends the very same event (same source and id) on 503,
// 429 or a transport error until it gets any other answer or limit passes:
// what a well-behaved emitter does, and safe because re-sends are
// idempotent. onRetry, when set, hears why each retry was needed.
func (a api) sendRetrying(ctx context.Context, e map[string]any, limit time.Duration, onRetry func(cause string)) (reply, int, error) {
	deadline := time.Now().Add(limit)
	tries := 0
	for {
		tries++
		r, err := a.post(ctx, e)
		if err == nil && r.Status != http.StatusServiceUnavailable && r.Status != http.StatusTooManyRequests {
			return r, tries, nil
		}
		if onRetry != nil {
			if err != nil {
				onRetry(err.Error())
			} else {
				e, _ := r.Body["error"].(map[string]any)
				msg, _ := e["message"].(string)
				onRetry(fmt.Sprintf("%d %s", r.Status, msg))
			}
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("still %d after %v: %s", r.Status, limit, r.Raw)
			}
			return r, tries, err
		}
		select {
		case <-ctx.Done():
			return r, tries, ctx.Err()
		case <-time.After(50 * time.Millisecond): // retry pause, not a timing assumption
		}
	}
}

const source = "https://shop.example/orders"

// ev builds a structured-mode CloudEvent.
func ev(typ, id, subject string, data map[string]any) map[string]any {
	e := map[string]any{
		"specversion": "1.0", "id": id, "source": source, "type": typ,
		"time": time.Now().UTC().Truncate(time.Second).Format(time.RFC3339), "datacontenttype": "application/json", "data": data,
	}
	if subject != "" {
		e["subject"] = subject
	}
	return e
}

func registration(id, subject string) map[string]any {
	return ev("privacy.subject.registered", id, subject, map[string]any{"residence": "CN", "age": 30})
}

// tally is what a load test reports.
type tally struct {
	acknowledged, found, duplicated, lost, wrongSeq int
}

func (c tally) String() string {
	return fmt.Sprintf("acknowledged=%d found=%d duplicated=%d lost=%d receipt-seq-mismatch=%d",
		c.acknowledged, c.found, c.duplicated, c.lost, c.wrongSeq)
}

// count compares acknowledged receipts (id -> seq) with what the ledger
// holds (source+id -> every sequence it is stored at).
func count(acked map[string]uint64, stored map[string][]uint64) tally {
	var c tally
	c.acknowledged = len(acked)
	for id, seq := range acked {
		seqs, ok := stored[id]
		if !ok {
			c.lost++
			continue
		}
		c.found++
		if seqs[0] != seq {
			c.wrongSeq++
		}
	}
	for _, seqs := range stored {
		if len(seqs) > 1 {
			c.duplicated++
		}
	}
	return c
}

// storedIDs reads LEDGER straight from NATS and returns, for every event
// of the test source, the sequences it is stored at, and the last sequence.
func storedIDs(t *testing.T, js jetstream.JetStream) (map[string][]uint64, uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out := map[string][]uint64{}
	var last uint64
	err := ledger.NewReader(js).Replay(ctx, ledger.Filter{}, func(e ledger.Entry) error {
		last = e.Seq
		r, err := e.Parse()
		if err != nil {
			return fmt.Errorf("seq %d: %w", e.Seq, err)
		}
		if r.Source == source {
			out[r.ID] = append(out[r.ID], e.Seq)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("replay LEDGER: %v", err)
	}
	return out, last
}

// latestSize is the tree size of the newest checkpoint in
// LEDGER_CHECKPOINTS, read straight from NATS and verified; 0 before any.
func latestSize(t *testing.T, js jetstream.JetStream, vkey string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, ledger.CheckpointStreamName)
	if err != nil {
		return 0
	}
	m, err := s.GetLastMsgForSubject(ctx, ledger.CheckpointSubject)
	if err != nil {
		return 0
	}
	cp, err := checkpoint.Open(m.Data, vkey)
	if err != nil {
		t.Fatalf("checkpoint at seq %d does not verify: %v", m.Sequence, err)
	}
	return cp.Size
}

// checkCheckpoints opens every checkpoint in LEDGER_CHECKPOINTS with the
// verifier key and checks the sequence never forks: sizes strictly grow
// (no size signed twice, none going back). It returns the sizes.
func checkCheckpoints(t *testing.T, js jetstream.JetStream, vkey string) []int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var sizes []int64
	err := ledger.NewReader(js).Checkpoints(ctx, func(seq uint64, note []byte) error {
		cp, err := checkpoint.Open(note, vkey)
		if err != nil {
			return fmt.Errorf("checkpoint at seq %d does not verify: %w", seq, err)
		}
		if n := len(sizes); n > 0 && cp.Size <= sizes[n-1] {
			return fmt.Errorf("checkpoint at seq %d has size %d after size %d: forked or went back", seq, cp.Size, sizes[n-1])
		}
		sizes = append(sizes, cp.Size)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(sizes) == 0 {
		t.Fatal("no checkpoints")
	}
	return sizes
}

// verifyInProcess runs `custos verify` straight over NATS with the auditor
// credentials, in this process, and fails unless it exits 0.
func verifyInProcess(t *testing.T, auditCreds, vkey string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := cli.Main(ctx, []string{"verify", "--nats-creds", auditCreds, "--verifier-key", vkey, "--output", "json"},
		strings.NewReader(""), &out, &errb, func(string) string { return "" })
	if code != 0 {
		t.Fatalf("custos verify exited %d: %s %s", code, out.String(), errb.String())
	}
	var rep struct {
		OK     bool  `json:"ok"`
		Events int64 `json:"events"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || !rep.OK {
		t.Fatalf("custos verify: %s (%v)", out.String(), err)
	}
	t.Logf("custos verify: %s", strings.TrimSpace(out.String()))
}
