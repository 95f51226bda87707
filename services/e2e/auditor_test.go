package e2e_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"custos.dev/ledger/bundle"
	"custos.dev/services/cli"
	"custos.dev/services/client"
)

// run executes the custos command line in-process.
func run(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = cli.Main(context.Background(), args, strings.NewReader(""), &out, &errb, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

// fill appends n registrations through batches from several clients.
func (h *harness) fill(em *client.Client, n int) {
	h.t.Helper()
	const batch = 100
	var wg sync.WaitGroup
	errs := make(chan error, n/batch+1)
	sem := make(chan struct{}, 4)
	run := uniq("fill")
	for i := 0; i < n; i += batch {
		var events []map[string]any
		for j := i; j < i+batch && j < n; j++ {
			events = append(events, h.ev("privacy.subject.registered", fmt.Sprintf("%s-%d", run, j), fmt.Sprintf("%s-user-%d", run, j), map[string]any{"residence": "CN", "age": 20 + j%50}))
		}
		b, _ := json.Marshal(events)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, body, err := em.Emit(context.Background(), b, "application/cloudevents-batch+json")
			if err != nil {
				errs <- err
				return
			}
			var res struct {
				Results []struct {
					Status int             `json:"status"`
					Error  json.RawMessage `json:"error"`
				} `json:"results"`
			}
			_ = json.Unmarshal(body, &res)
			for _, r := range res.Results {
				if r.Status != http.StatusCreated {
					errs <- fmt.Errorf("batch entry status %d: %s", r.Status, r.Error)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		h.t.Fatal(err)
	}
}

func TestVerifyLargeLedger(t *testing.T) {
	if testing.Short() {
		t.Skip("10k events")
	}
	h := start(t)
	em := h.emitter()
	for round := 0; round < 4; round++ {
		h.fill(em, 2600)
		h.waitCheckpoint(int64(h.streamLen()))
	}
	if n := h.streamLen(); n < 10000 {
		t.Fatalf("only %d events", n)
	}
	au := h.auditor()
	env := map[string]string{"CUSTOS_TOKEN": au.Token}
	code, out, errOut := run(t, env, "verify", "--server", h.app.URL, "--output", "json")
	if code != 0 {
		t.Fatalf("verify over HTTP: exit %d\n%s\n%s", code, out, errOut)
	}
	var rep struct {
		OK          bool  `json:"ok"`
		Events      int64 `json:"events"`
		Checkpoints int   `json:"checkpoints"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || !rep.OK || rep.Events < 10000 || rep.Checkpoints < 4 {
		t.Fatalf("report %s (%v)", out, err)
	}
	// The same straight from NATS, with only the auditor's credentials.
	code, out, errOut = run(t, nil, "verify", "--nats-creds", filepath.Join(h.dir, "nats-auditor.json"),
		"--verifier-key", "@"+filepath.Join(h.dir, "verifier.key"), "--output", "json")
	if code != 0 {
		t.Fatalf("verify over NATS: exit %d\n%s\n%s", code, out, errOut)
	}
}

func TestAuditBundleTamper(t *testing.T) {
	h := start(t)
	em := h.emitter()
	h.fill(em, 120)
	h.waitCheckpoint(int64(h.streamLen()))
	h.fill(em, 0)
	s := "user-bundle"
	h.register(em, s, "reg-b", 30)
	h.mustDeny(em, h.transfer(s, "b1", "SG", "standard_contract"), "NO_SEPARATE_CONSENT")
	h.waitCheckpoint(int64(h.streamLen()))
	au := h.auditor()
	env := map[string]string{"CUSTOS_TOKEN": au.Token}
	file := filepath.Join(t.TempDir(), "audit.tar.gz")
	if code, out, errOut := run(t, env, "audit", "export", "--server", h.app.URL, "--out", file); code != 0 {
		t.Fatalf("export: %d %s %s", code, out, errOut)
	}
	if code, out, errOut := run(t, nil, "audit", "verify", file, "--output", "json"); code != 0 {
		t.Fatalf("verify intact bundle: %d %s %s", code, out, errOut)
	}
	orig, err := readBundle(file)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		mutate  func(c *bundle.Contents)
		wantSeq string
	}{
		{"altered byte", func(c *bundle.Contents) {
			e := &c.Events[40]
			e.Event = bytes.Replace(e.Event, []byte(`"age":`), []byte(`"agf":`), 1)
		}, fmt.Sprintf(`"first_bad_seq": %d`, orig.Events[40].Seq)},
		{"removed event", func(c *bundle.Contents) {
			c.Events = append(c.Events[:60:60], c.Events[61:]...)
		}, fmt.Sprintf(`"first_bad_seq": %d`, orig.Events[60].Seq)},
		{"swapped checkpoints", func(c *bundle.Contents) {
			n := len(c.Checkpoints)
			c.Checkpoints[n-2].Note, c.Checkpoints[n-1].Note = c.Checkpoints[n-1].Note, c.Checkpoints[n-2].Note
		}, fmt.Sprintf(`"bad_checkpoint_seq": %d`, orig.Checkpoints[len(orig.Checkpoints)-1].Seq)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cp, _ := readBundle(file)
			c.mutate(cp)
			bad := filepath.Join(t.TempDir(), "bad.tar.gz")
			f, _ := os.Create(bad)
			if err := bundle.Write(f, cp); err != nil {
				t.Fatal(err)
			}
			f.Close()
			code, out, errOut := run(t, nil, "audit", "verify", bad, "--output", "json")
			if code != 1 || !strings.Contains(out, c.wantSeq) {
				t.Fatalf("exit %d, want 1 naming %s:\n%s%s", code, c.wantSeq, out, errOut)
			}
		})
	}
	// A byte flipped inside the file itself breaks the manifest digest.
	raw, _ := os.ReadFile(file)
	flipped := flipInEvents(t, raw)
	bad := filepath.Join(t.TempDir(), "flipped.tar.gz")
	_ = os.WriteFile(bad, flipped, 0o644)
	if code, out, _ := run(t, nil, "audit", "verify", bad); code != 1 {
		t.Fatalf("flipped byte: exit %d %s", code, out)
	}
}

func readBundle(path string) (*bundle.Contents, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return bundle.Read(f)
}

// flipInEvents rewrites a bundle with one byte of events.ndjson changed
// but the manifest untouched.
func flipInEvents(t *testing.T, raw []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	for {
		hd, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		if hd.Name == bundle.EventsFile {
			i := bytes.Index(b, []byte(`"age":`))
			b[i+2] ^= 0x01
		}
		_ = tw.WriteHeader(hd)
		_, _ = tw.Write(b)
	}
	tw.Close()
	zw.Close()
	return out.Bytes()
}

// Point-in-time state before and after a withdrawal, and the transfer
// register listing allowed and blocked transfers.
func TestPointInTimeAndRegister(t *testing.T) {
	h := start(t)
	em := h.emitter()
	s := "user-pit"
	h.register(em, s, "reg-pit", 30)
	h.consent(em, s, "c-pit", map[string]any{"destinations": []string{"SG"}})
	h.mustAppend(em, h.transfer(s, "pit-1", "SG", "standard_contract"))
	beforeWithdrawal := h.clock.Now()
	h.clock.Advance(time.Minute)
	h.mustAppend(em, h.ev("privacy.consent.withdrawn", "w-pit", s, map[string]any{"consent_id": "c-pit"}))
	h.mustDeny(em, h.transfer(s, "pit-2", "SG", "standard_contract"), "CONSENT_WITHDRAWN")
	h.mustDeny(em, h.transfer(s, "pit-3", "US", "standard_contract"), "DESTINATION_NOT_ALLOWED")

	au := h.auditor()
	state := func(at time.Time) map[string]any {
		var st map[string]any
		q := url.Values{}
		if !at.IsZero() {
			q.Set("at", at.Format(time.RFC3339))
		}
		if err := au.GetJSON(context.Background(), "/v1/subjects/"+s+"/state", q, &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	then, now := state(beforeWithdrawal), state(time.Time{})
	if n := len(then["consents_in_force"].([]any)); n != 1 {
		t.Fatalf("before the withdrawal: %d consents in force, want 1: %v", n, then)
	}
	if n := len(now["consents_in_force"].([]any)); n != 0 {
		t.Fatalf("after the withdrawal: %d consents in force, want 0", n)
	}
	if len(then["transfers"].([]any)) != 1 {
		t.Fatalf("transfers before: %v", then["transfers"])
	}
	var reg struct {
		Transfers []struct {
			Allowed bool     `json:"allowed"`
			To      string   `json:"to_region"`
			Reasons []string `json:"reasons"`
			Rev     string   `json:"policy_revision"`
		} `json:"transfers"`
	}
	if err := au.GetJSON(context.Background(), "/v1/transfers", nil, &reg); err != nil {
		t.Fatal(err)
	}
	allowed, blocked := 0, 0
	for _, tr := range reg.Transfers {
		if tr.Rev == "" {
			t.Fatalf("register entry without policy revision: %+v", tr)
		}
		if tr.Allowed {
			allowed++
		} else {
			blocked++
		}
	}
	if allowed != 1 || blocked != 2 {
		t.Fatalf("register: %d allowed, %d blocked; want 1 and 2: %+v", allowed, blocked, reg)
	}
	csv, err := au.GetText(context.Background(), "/v1/transfers?format=csv&destination=US")
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(strings.TrimSpace(string(csv)), "\n"); lines != 1 || !strings.Contains(string(csv), "DESTINATION_NOT_ALLOWED") {
		t.Fatalf("csv register for US:\n%s", csv)
	}
	// CLI: replay --state --at, and replay filters.
	env := map[string]string{"CUSTOS_TOKEN": au.Token}
	code, out, _ := run(t, env, "replay", "--server", h.app.URL, "--subject", s, "--state", "--at", beforeWithdrawal.Format(time.RFC3339), "--output", "json")
	if code != 0 || !strings.Contains(out, `"consents_in_force"`) {
		t.Fatalf("replay --state: %d %s", code, out)
	}
	code, out, _ = run(t, env, "replay", "--server", h.app.URL, "--subject", s, "--type", "privacy.data.transferred", "--output", "csv")
	if code != 0 || strings.Count(strings.TrimSpace(out), "\n") != 1 {
		t.Fatalf("replay csv: %d\n%s", code, out)
	}
}

// Auditors read and verify; they never emit.
func TestAuditorCannotEmit(t *testing.T) {
	h := start(t)
	au := h.auditor()
	r := h.post(au, h.ev("privacy.subject.registered", "a-1", "u-a", map[string]any{"residence": "CN", "age": 30}))
	if r.Status != http.StatusForbidden || r.errCode() != "forbidden" {
		t.Fatalf("auditor emit: %d %s", r.Status, r.Raw)
	}
	nc, err := h.app.NATSServer().Auditor.Connect("auditor-publish")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Request("ledger.s.x.privacy.subject.registered", []byte("{}"), 2*time.Second); err == nil {
		t.Fatal("auditor NATS user could publish to the ledger")
	}
}

// The state at an instant is what the ledger had recorded by then: a
// consent sent later with an earlier event time does not appear at an
// instant before it was recorded (its event time is shown once it does),
// and an instant before anything, the year 1 included, is the empty state.
func TestPointInTimeIsByRecordedTime(t *testing.T) {
	h := start(t)
	em := h.emitter()
	s := "user-backdated"
	h.register(em, s, "reg-back", 30)
	recordedBefore := h.clock.Now()
	h.clock.Advance(time.Hour)
	c := h.ev("privacy.consent.granted", "c-back", s, map[string]any{
		"consent_id": "c-back", "notice_version": "1.0", "purposes": []string{"service_provision"}, "categories": []string{"identity.contact"},
	})
	c["time"] = recordedBefore.Add(-time.Hour).Format(time.RFC3339)
	h.mustAppend(em, c)

	au := h.auditor()
	state := func(at string) map[string]any {
		var st map[string]any
		if err := au.GetJSON(context.Background(), "/v1/subjects/"+s+"/state", url.Values{"at": {at}}, &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	if n := len(state(recordedBefore.Format(time.RFC3339))["consents"].([]any)); n != 0 {
		t.Errorf("at an instant before the backdated consent was recorded: %d consents, want 0", n)
	}
	later := state(h.clock.Now().Format(time.RFC3339))
	cs := later["consents"].([]any)
	if len(cs) != 1 || cs[0].(map[string]any)["granted_at"] != c["time"] {
		t.Errorf("once recorded, the consent with its event time %v: %v", c["time"], cs)
	}
	if st := state("0001-01-01T00:00:00Z"); st["registered"] != false || len(st["consents"].([]any)) != 0 {
		t.Errorf("the state at year 1 is not empty: %v", st)
	}
}
