package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"custos.dev/services/client"
)

// buildCustos builds the custos binary from this tree into a temporary
// directory, once for the test.
func buildCustos(t *testing.T) string {
	t.Helper()
	// Build from the services module itself, so it works in the workspace
	// and with GOWORK=off alike.
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "custos")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	started := time.Now()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/custos")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built custos in %v", time.Since(started).Round(time.Millisecond))
	return bin
}

// serveProc is a running `custos serve` process.
type serveProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	// listen and natsListen are the addresses in use, so a restart can
	// take the very same ones.
	listen, natsListen string
}

// fileLog is a log file read back on failure.
type fileLog string

func (f fileLog) String() string {
	b, _ := os.ReadFile(string(f))
	return string(b)
}

// serve starts `custos serve` and waits until /readyz answers 200. With
// port 0 the process picks free ports; they are read back from what it
// prints and from DATA/nats-auditor.json.
func serve(t *testing.T, bin, data, listen, natsListen, logPath string) *serveProc {
	t.Helper()
	var offset int64
	if st, err := os.Stat(logPath); err == nil {
		offset = st.Size()
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "serve", "--data", data, "--listen", listen, "--nats-listen", natsListen,
		"--checkpoint-interval", "200ms", "--rate-limit", "100000", "--log-format", "json")
	for _, kv := range os.Environ() {
		// The embedded dev key server, not whatever Vault the host knows.
		if !strings.HasPrefix(kv, "VAULT_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProc{cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { p.kill() })
	const serving = "custos: serving on http://"
	hc := &http.Client{Timeout: 2 * time.Second}
	waitFor(t, 60*time.Second, "custos serve to be ready", func() bool {
		select {
		case <-p.exited:
			t.Fatalf("custos serve exited: %v", cmd.ProcessState)
		default:
		}
		if p.listen == "" {
			b, _ := os.ReadFile(logPath)
			if int64(len(b)) < offset {
				return false
			}
			_, rest, ok := strings.Cut(string(b[offset:]), serving)
			if !ok {
				return false
			}
			p.listen, _, _ = strings.Cut(rest, ";")
		}
		res, err := hc.Get("http://" + p.listen + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	b, err := os.ReadFile(filepath.Join(data, "nats-auditor.json"))
	if err != nil {
		t.Fatal(err)
	}
	var creds struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal(b, &creds); err != nil {
		t.Fatal(err)
	}
	p.natsListen = strings.TrimPrefix(creds.URL, "nats://")
	return p
}

// kill sends SIGKILL to this process (by its own pid) and waits for it.
func (p *serveProc) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// terminate asks for a graceful shutdown and waits for it.
func (p *serveProc) terminate(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.kill()
		t.Error("custos serve did not stop within 30s of SIGTERM")
	}
}

// A real `custos serve` killed with SIGKILL while four clients append:
// after a restart on the same data directory every acknowledged event is
// in the ledger exactly once, an event acknowledged before the kill and
// re-sent gets its original receipt, events whose answer the kill swallowed
// are appended exactly once when re-sent, the integrator signs the whole
// tree again, and `custos verify` (the binary, over NATS with the auditor
// credentials) exits 0.
func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and kills a real process")
	}
	bin := buildCustos(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	logPath := filepath.Join(dir, "serve.log")
	dumpOnFailure(t, "custos serve", fileLog(logPath))
	p := serve(t, bin, data, "127.0.0.1:0", "127.0.0.1:0", logPath)
	base := "http://" + p.listen
	adminTok, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	admin := newAPI(base, strings.TrimSpace(string(adminTok)))
	em := newAPI(base, admin.createToken(t, "emitter", source))
	audTok := admin.createToken(t, "auditor", "")

	aud := client.New(base, audTok)
	const clients, perClient, killAfter = 4, 300, 600
	var (
		mu      sync.Mutex
		acked   = map[string]reply{}
		sent    = map[string]map[string]any{} // acknowledged events, as sent
		inDoubt = map[string]map[string]any{} // sent, answer lost to the kill
		total   atomic.Int64
		wg      sync.WaitGroup
	)
	reached := make(chan struct{})
	var once sync.Once
	errs := make(chan error, clients)
	for cl := 0; cl < clients; cl++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perClient; i++ {
				id := fmt.Sprintf("crash-%d-%d", cl, i)
				e := registration(id, "crash-user-"+id)
				r, err := em.post(context.Background(), e)
				if err != nil || r.Status == http.StatusServiceUnavailable {
					// The server went away under this request: it may or
					// may not have been appended. Stop; re-send later.
					mu.Lock()
					inDoubt[id] = e
					mu.Unlock()
					return
				}
				if r.Status != http.StatusCreated {
					errs <- fmt.Errorf("%s: %d %s", id, r.Status, r.Raw)
					return
				}
				mu.Lock()
				acked[id], sent[id] = r, e
				mu.Unlock()
				if total.Add(1) == killAfter {
					once.Do(func() { close(reached) })
				}
			}
		}()
	}
	select {
	case <-reached:
	case <-time.After(60 * time.Second):
		t.Fatal("appends did not reach the kill point")
	}
	preKill, _ := checkpointSize(aud)
	p.kill()
	ackedAtKill := total.Load()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("SIGKILL after %d acknowledged appends (latest checkpoint then: size %d); %d acknowledged in all before the process died; %d requests in doubt",
		ackedAtKill, preKill, len(acked), len(inDoubt))

	restarted := time.Now()
	p = serve(t, bin, data, p.listen, p.natsListen, logPath)
	t.Logf("restarted and ready in %v", time.Since(restarted).Round(time.Millisecond))

	// A client that never saw its receipt (a timeout, here the kill)
	// re-sends: it gets the original receipt, and nothing is appended twice.
	// The last event acknowledged before the kill is the hardest case.
	var oldID string
	for id, r := range acked {
		if oldID == "" || r.seq() > acked[oldID].seq() {
			oldID = id
		}
	}
	old := sent[oldID]
	r := em.mustPost(t, old, http.StatusOK)
	if r.seq() != acked[oldID].seq() || r.leafHash() != acked[oldID].leafHash() {
		t.Fatalf("re-send of %s after the restart: seq %d leaf %s, original seq %d leaf %s",
			oldID, r.seq(), r.leafHash(), acked[oldID].seq(), acked[oldID].leafHash())
	}
	t.Logf("re-send of the last event acknowledged before the kill: 200 with its original receipt (seq %d)", r.seq())
	recovered, appended := 0, 0
	for id, e := range inDoubt {
		r, _, err := em.sendRetrying(context.Background(), e, 30*time.Second, nil)
		if err != nil {
			t.Fatalf("re-send %s: %v", id, err)
		}
		switch r.Status {
		case http.StatusOK:
			recovered++ // stored before the kill; the original receipt
		case http.StatusCreated:
			appended++
		default:
			t.Fatalf("re-send %s: %d %s", id, r.Status, r.Raw)
		}
		acked[id] = r
	}
	fresh := em.mustPost(t, registration("crash-after-restart", "crash-user-after"), http.StatusCreated)
	acked["crash-after-restart"] = fresh

	// Replay through the API with an auditor token and count ids.
	stored := map[string][]uint64{}
	var last uint64
	err = aud.Replay(context.Background(), nil, func(l client.ReplayLine) error {
		last = l.Seq
		var rec struct {
			ID     string `json:"id"`
			Source string `json:"source"`
		}
		if err := json.Unmarshal(l.Event, &rec); err != nil {
			return fmt.Errorf("seq %d: %w", l.Seq, err)
		}
		if rec.Source == source {
			stored[rec.ID] = append(stored[rec.ID], l.Seq)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	seqs := map[string]uint64{}
	for id, r := range acked {
		seqs[id] = r.seq()
	}
	got := count(seqs, stored)
	unacknowledged := 0
	for id := range stored {
		if _, ok := seqs[id]; !ok {
			unacknowledged++
		}
	}
	t.Logf("kill -9: %v; in doubt %d (%d had been stored before the kill and got their original receipt, %d appended on re-send); stored but never acknowledged %d",
		got, len(inDoubt), recovered, appended, unacknowledged)
	if got.lost != 0 || got.duplicated != 0 || got.wrongSeq != 0 || unacknowledged != 0 {
		t.Fatalf("ledger does not match the receipts: %v, %d stored but never acknowledged", got, unacknowledged)
	}

	// The integrator resumes: a checkpoint covering the whole tree,
	// including the event appended after the restart.
	waitFor(t, 20*time.Second, "a checkpoint covering the whole tree after the restart", func() bool {
		size, ok := checkpointSize(aud)
		return ok && size == last
	})
	if last <= preKill {
		t.Fatalf("the tree (%d) did not grow past the checkpoint before the kill (%d)", last, preKill)
	}

	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	verify := exec.CommandContext(ctx, bin, "verify", "--nats-creds", filepath.Join(data, "nats-auditor.json"),
		"--verifier-key", "@"+filepath.Join(data, "verifier.key"))
	verify.Stdout, verify.Stderr = &out, &errb
	if err := verify.Run(); err != nil {
		t.Fatalf("custos verify: %v\n%s%s", err, out.String(), errb.String())
	}
	t.Logf("custos verify: %s", strings.TrimSpace(out.String()))
	p.terminate(t)
}

// checkpointSize is the tree size of the latest checkpoint the API serves.
func checkpointSize(aud *client.Client) (uint64, bool) {
	note, err := aud.GetText(context.Background(), "/v1/checkpoint")
	if err != nil {
		return 0, false
	}
	lines := strings.SplitN(string(note), "\n", 3)
	if len(lines) < 3 {
		return 0, false
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	return size, err == nil
}
