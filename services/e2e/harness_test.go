// Package e2e_test runs Custos end to end: the real app (embedded NATS
// JetStream with fsync, the dev key server over real HTTP through the Vault
// client, the built-in Rego policies) driven over HTTP.
package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"custos.dev/ledger"
	"custos.dev/services/app"
	"custos.dev/services/client"
)

// clock is an injectable clock tests move by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now().UTC().Truncate(time.Second)} }

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

// syncBuffer is a log sink tests can read while the app writes.
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

type harness struct {
	t     *testing.T
	dir   string
	cfg   app.Config
	app   *app.App
	clock *clock
	logs  *syncBuffer
	admin *client.Client
	aud   *client.Client
}

type clientT = client.Client

const shopSource = "https://shop.example/orders"

func start(t *testing.T, mods ...func(*app.Config)) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), clock: newClock(), logs: &syncBuffer{}}
	h.cfg = app.Config{
		DataDir: h.dir, Listen: "127.0.0.1:0", NATSListen: "127.0.0.1:0",
		CheckpointInterval: 100 * time.Millisecond, RetentionInterval: time.Hour,
		Clock: h.clock.Now, RatePerToken: 100000,
		Logger: slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, m := range mods {
		m(&h.cfg)
	}
	h.up()
	t.Cleanup(h.down)
	return h
}

func (h *harness) up() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, err := app.Start(ctx, h.cfg)
	if err != nil {
		h.t.Fatalf("start custos: %v", err)
	}
	h.app = a
	h.admin = client.New(a.URL, a.AdminToken)
}

func (h *harness) down() {
	if h.app == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.app.Close(ctx); err != nil {
		h.t.Errorf("close: %v", err)
	}
	h.app = nil
}

func (h *harness) restart() {
	h.t.Helper()
	h.down()
	h.up()
}

func (h *harness) token(role, source string) *client.Client {
	h.t.Helper()
	tok, err := h.admin.CreateToken(context.Background(), role, source)
	if err != nil {
		h.t.Fatalf("create %s token: %v", role, err)
	}
	return client.New(h.app.URL, tok.Token)
}

func (h *harness) emitter() *client.Client { return h.token("emitter", shopSource) }
func (h *harness) auditor() *client.Client { return h.token("auditor", "") }

// ev builds a structured-mode event of the shop source at the clock's time.
func (h *harness) ev(typ, id, subject string, data map[string]any) map[string]any {
	e := map[string]any{
		"specversion": "1.0", "id": id, "source": shopSource, "type": typ,
		"time": h.clock.Now().Format(time.RFC3339), "datacontenttype": "application/json", "data": data,
	}
	if subject != "" {
		e["subject"] = subject
	}
	return e
}

// resp is a decoded JSON answer.
type resp struct {
	Status int
	Body   map[string]any
	Raw    []byte
}

func (r resp) errField() string {
	e, _ := r.Body["error"].(map[string]any)
	f, _ := e["field"].(string)
	return f
}

func (r resp) errCode() string {
	e, _ := r.Body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func (r resp) reasons() []string {
	d, _ := r.Body["decision"].(map[string]any)
	rs, _ := d["reasons"].([]any)
	var out []string
	for _, x := range rs {
		out = append(out, x.(map[string]any)["code"].(string))
	}
	return out
}

func (r resp) seq() uint64 {
	f, _ := r.Body["seq"].(float64)
	return uint64(f)
}

// send posts a raw body with a content type.
func (h *harness) send(c *client.Client, contentType string, body []byte, hdr ...string) resp {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.BaseURL+"/v1/events", bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := resp{Status: res.StatusCode, Raw: raw}
	_ = json.Unmarshal(raw, &out.Body)
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		h.t.Errorf("answer %d has Content-Type %q, want JSON", res.StatusCode, ct)
	}
	return out
}

func (h *harness) post(c *client.Client, e map[string]any) resp {
	h.t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.send(c, "application/cloudevents+json", b)
}

// mustAppend posts and fails unless the event was appended (201).
func (h *harness) mustAppend(c *client.Client, e map[string]any) resp {
	h.t.Helper()
	r := h.post(c, e)
	if r.Status != http.StatusCreated {
		h.t.Fatalf("%s %s: got %d %s", e["type"], e["id"], r.Status, r.Raw)
	}
	return r
}

// mustDeny posts and fails unless the event was denied with every code.
func (h *harness) mustDeny(c *client.Client, e map[string]any, codes ...string) resp {
	h.t.Helper()
	r := h.post(c, e)
	if r.Status != http.StatusForbidden || r.errCode() != "policy_denied" {
		h.t.Fatalf("%s %s: want 403 policy_denied, got %d %s", e["type"], e["id"], r.Status, r.Raw)
	}
	got := r.reasons()
	for _, c := range codes {
		found := false
		for _, g := range got {
			found = found || g == c
		}
		if !found {
			h.t.Fatalf("%s %s: reasons %v lack %s", e["type"], e["id"], got, c)
		}
	}
	return r
}

// streamLen is LEDGER's message count, read from NATS.
func (h *harness) streamLen() uint64 {
	h.t.Helper()
	js, err := jetstream.New(h.app.Conn())
	if err != nil {
		h.t.Fatal(err)
	}
	s, err := js.Stream(context.Background(), ledger.StreamName)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return info.State.Msgs
}

// waitCheckpoint signs a checkpoint covering at least n events.
func (h *harness) waitCheckpoint(n int64) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.app.Ledger.WaitApplied(ctx, uint64(n)); err != nil {
		h.t.Fatalf("follower did not reach %d: %v", n, err)
	}
	if err := h.app.Ledger.SignNow(ctx); err != nil {
		h.t.Fatalf("sign: %v", err)
	}
	if cp := h.app.Ledger.Latest(); cp == nil || cp.Size < n {
		h.t.Fatalf("no checkpoint covering %d events", n)
	}
}

// waitMirror waits until the auditors' mirrors hold everything the ledger
// streams hold now.
func (h *harness) waitMirror() {
	h.t.Helper()
	ctx := context.Background()
	js, _ := jetstream.New(h.app.Conn())
	last := func(name string) uint64 {
		s, err := js.Stream(ctx, name)
		if err != nil {
			h.t.Fatal(err)
		}
		return s.CachedInfo().State.LastSeq
	}
	l, c := last(ledger.StreamName), last(ledger.CheckpointStreamName)
	waitFor(h.t, "auditor mirrors", func() bool { return h.app.NATSServer().MirrorCaughtUp(ctx, l, c) })
}

// scanDir fails if any file under dir contains one of the needles.
func scanDir(t *testing.T, dir string, needles ...string) {
	t.Helper()
	for _, n := range needles {
		for _, path := range filesHolding(t, dir, []byte(n)) {
			t.Errorf("%s contains %q in clear", path, n)
		}
	}
}

// filesHolding lists the files under dir that contain needle.
func filesHolding(t *testing.T, dir string, needle []byte) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, needle) {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A realistic life of one subject, reused by several tests.
func (h *harness) register(c *client.Client, subject, id string, age int) {
	h.mustAppend(c, h.ev("privacy.subject.registered", id, subject, map[string]any{"residence": "CN", "age": age}))
}

func (h *harness) consent(c *client.Client, subject, id string, extra map[string]any) resp {
	data := map[string]any{
		"consent_id": id, "notice_version": "1.0",
		"purposes":   []string{"service_provision", "customer_support"},
		"categories": []string{"identity.contact", "identity.basic", "usage.device"},
	}
	for k, v := range extra {
		data[k] = v
	}
	return h.mustAppend(c, h.ev("privacy.consent.granted", "ev-"+id, subject, data))
}

func (h *harness) transfer(subject, id, to, mechanism string) map[string]any {
	d := map[string]any{
		"transfer_id": id, "recipient": "acme-sg", "from_region": "CN", "to_region": to,
		"categories": []string{"identity.contact"}, "purpose": "customer_support",
	}
	if mechanism != "" {
		d["mechanism"] = mechanism
	}
	return h.ev("privacy.data.transferred", "ev-"+id, subject, d)
}

var seqCounter struct {
	sync.Mutex
	n int
}

func uniq(prefix string) string {
	seqCounter.Lock()
	defer seqCounter.Unlock()
	seqCounter.n++
	return fmt.Sprintf("%s-%d", prefix, seqCounter.n)
}

// waitFor polls cond until it holds or 30 s pass. It waits on a condition,
// never for a fixed time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		if info.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if strings.HasSuffix(path, ".go") || strings.HasSuffix(path, ".mod") || strings.HasSuffix(path, ".sum") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func findConfig(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "data", "custos", "config", "data.json")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("policy config not at %s: %v", p, err)
	}
	return p
}

// readyz asks /readyz, with the admin token when withToken (the checks'
// details are shown only then).
func (h *harness) readyz(withToken bool) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, h.app.URL+"/readyz", nil)
	if err != nil {
		return nil, err
	}
	if withToken {
		req.Header.Set("Authorization", "Bearer "+h.admin.Token)
	}
	return http.DefaultClient.Do(req)
}
