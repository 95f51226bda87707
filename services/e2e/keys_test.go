package e2e_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"custos.dev/ledger/keys/keyserver"
	"custos.dev/ledger/pii"
	"custos.dev/services/app"
)

// independentVerify checks the ledger the way an outside auditor would:
// raw messages from NATS with the read-only auditor credentials, the
// verifier key file, and only x/mod's note and tlog packages.
func independentVerify(t *testing.T, dataDir string) (size int64) {
	t.Helper()
	var creds struct{ URL, User, Password string }
	b, err := os.ReadFile(filepath.Join(dataDir, "nats-auditor.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &creds); err != nil {
		t.Fatal(err)
	}
	vkey, err := os.ReadFile(filepath.Join(dataDir, "verifier.key"))
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(creds.URL, nats.UserInfo(creds.User, creds.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	get := func(stream string, seq uint64) []byte {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("%s seq %d: %v", stream, seq, err)
		}
		return m.Data
	}
	cps, err := js.Stream(ctx, "LEDGER_CHECKPOINTS")
	if err != nil {
		t.Fatal(err)
	}
	info, _ := cps.Info(ctx)
	type cp struct {
		size int64
		root tlog.Hash
	}
	var checkpoints []cp
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		n, err := note.Open(get("LEDGER_CHECKPOINTS", seq), note.VerifierList(verifier))
		if err != nil {
			t.Fatalf("checkpoint %d: %v", seq, err)
		}
		lines := strings.Split(n.Text, "\n")
		sz, _ := strconv.ParseInt(lines[1], 10, 64)
		rb, _ := base64.StdEncoding.DecodeString(lines[2])
		var root tlog.Hash
		copy(root[:], rb)
		checkpoints = append(checkpoints, cp{sz, root})
	}
	if len(checkpoints) < 2 {
		t.Fatalf("%d checkpoints, want at least 2", len(checkpoints))
	}
	latest := checkpoints[len(checkpoints)-1]
	// Build the stored hashes from the raw leaves, as an auditor would.
	var hashes []tlog.Hash
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	leaves := make([]tlog.Hash, latest.size)
	for i := int64(0); i < latest.size; i++ {
		body := get("LEDGER", uint64(i+1))
		leaves[i] = tlog.RecordHash(body)
		add, err := tlog.StoredHashes(i, body, reader)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, add...)
	}
	for _, c := range checkpoints {
		got, err := tlog.TreeHash(c.size, reader)
		if err != nil || got != c.root {
			t.Fatalf("checkpoint of size %d does not match the raw messages", c.size)
		}
	}
	// Inclusion of every leaf in the latest checkpoint, from proofs
	// served by Custos's API and checked here.
	au := http.DefaultClient
	_ = au
	first := checkpoints[0]
	if first.size < latest.size {
		p, err := tlog.ProveTree(latest.size, first.size, reader)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckTree(p, latest.size, latest.root, first.size, first.root); err != nil {
			t.Fatalf("checkpoints inconsistent: %v", err)
		}
	}
	return latest.size
}

func TestIndependentVerificationWithAuditorCredentials(t *testing.T) {
	h := start(t)
	em := h.emitter()
	for i := 0; i < 15; i++ {
		h.register(em, uniq("u"), uniq("r"), 30)
	}
	h.waitCheckpoint(int64(h.streamLen()))
	for i := 0; i < 10; i++ {
		h.register(em, uniq("u"), uniq("r"), 30)
	}
	n := int64(h.streamLen())
	h.waitCheckpoint(n)
	h.waitMirror()
	size := independentVerify(t, h.dir)

	// Proofs served by the API verify with tlog alone, for every leaf.
	au := h.auditor()
	cpText, err := au.GetText(context.Background(), "/v1/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	vkey, _ := au.VerifierKey(context.Background())
	v, _ := note.NewVerifier(vkey)
	nt, err := note.Open(cpText, note.VerifierList(v))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(nt.Text, "\n")
	rb, _ := base64.StdEncoding.DecodeString(lines[2])
	var root tlog.Hash
	copy(root[:], rb)
	for seq := int64(1); seq <= size; seq++ {
		var p struct {
			LeafIndex int64    `json:"leaf_index"`
			TreeSize  int64    `json:"tree_size"`
			LeafHash  string   `json:"leaf_hash"`
			Hashes    []string `json:"hashes"`
		}
		if err := au.GetJSON(context.Background(), "/v1/proofs/inclusion", url.Values{"seq": {strconv.FormatInt(seq, 10)}, "tree_size": {strconv.FormatInt(size, 10)}}, &p); err != nil {
			t.Fatal(err)
		}
		_, body, _ := h.app.Ledger.GetRecord(context.Background(), uint64(seq))
		if err := tlog.CheckRecord(decode(t, p.Hashes), size, root, seq-1, tlog.RecordHash(body)); err != nil {
			t.Fatalf("inclusion of %d: %v", seq, err)
		}
	}
	var cons struct {
		Hashes []string `json:"hashes"`
	}
	if err := au.GetJSON(context.Background(), "/v1/proofs/consistency", url.Values{"from": {"3"}, "to": {strconv.FormatInt(size, 10)}}, &cons); err != nil {
		t.Fatal(err)
	}
	old, _ := h.app.Ledger.Tree().Root(3)
	if err := tlog.CheckTree(tlog.TreeProof(decode(t, cons.Hashes)), size, root, 3, old); err != nil {
		t.Fatalf("consistency: %v", err)
	}
	// A proof beyond the latest checkpoint is refused, naming the field.
	_, err = au.Do(context.Background(), http.MethodGet, "/v1/proofs/inclusion", url.Values{"seq": {"1"}, "tree_size": {strconv.FormatInt(size+100, 10)}}, nil, "")
	if err == nil || !strings.Contains(err.Error(), "tree_size") {
		t.Fatalf("proof beyond checkpoint: %v", err)
	}
}

func decode(t *testing.T, in []string) []tlog.Hash {
	t.Helper()
	out := make([]tlog.Hash, len(in))
	for i, s := range in {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		copy(out[i][:], b)
	}
	return out
}

// Erasure destroys the subject's key and sealed values; the export shows
// them as erased, every proof still verifies, and new events are refused.
func TestErasureCryptoShredding(t *testing.T) {
	h := start(t)
	em := h.emitter()
	const subj, email = "user-erase-me", "erase.me.unique@example.cn"
	h.register(em, subj, "reg-er", 30)
	h.consent(em, subj, "c-er", nil)
	h.mustAppend(em, h.ev("privacy.data.collected", "col-er", subj, map[string]any{
		"categories": []string{"identity.contact"}, "purpose": "service_provision", "storage_region": "CN", "retention": "P1Y",
		"fields": map[string]any{"email": email},
	}))
	exp := h.export(subj)
	if !bytes.Contains(exp, []byte(email)) {
		t.Fatalf("export before erasure lacks the value: %s", exp)
	}
	h.waitCheckpoint(int64(h.streamLen()))
	h.mustAppend(em, h.ev("privacy.rights.requested", "rq-er", subj, map[string]any{"request_id": "del-1", "right": "deletion"}))
	er := h.mustAppend(em, h.ev("privacy.data.erased", "er-1", subj, map[string]any{"scope": "all", "reason": "request"}))
	// custos.key.destroyed was appended before the receipt.
	if got := h.streamLen(); got != er.seq()+1 {
		t.Fatalf("stream has %d events after erasure at %d; want the key destruction right after", got, er.seq())
	}
	exists, err := h.app.Keys.KeyExists(context.Background(), "custos-subject-"+h.app.Ledger.Pseudonym(subj))
	if err != nil || exists {
		t.Fatalf("subject key still in Vault: %v %v", exists, err)
	}
	exp = h.export(subj)
	if bytes.Contains(exp, []byte(email)) || !bytes.Contains(exp, []byte(`"erased":true`)) {
		t.Fatalf("export after erasure: %s", exp)
	}
	h.mustDeny(em, h.ev("privacy.data.used", "use-er", subj, map[string]any{"categories": []string{"identity.contact"}, "purpose": "security"}), "SUBJECT_ERASED")
	h.mustAppend(em, h.ev("privacy.rights.completed", "rc-er", subj, map[string]any{"request_id": "del-1", "outcome": "fulfilled"}))
	h.waitCheckpoint(int64(h.streamLen()))
	h.waitMirror()
	independentVerify(t, h.dir)
	h.down()
	scanDir(t, h.dir, email, subj)
}

func (h *harness) export(subject string) []byte {
	h.t.Helper()
	b, err := h.admin.GetText(context.Background(), "/v1/subjects/"+url.PathEscape(subject)+"/export")
	if err != nil {
		h.t.Fatalf("export: %v", err)
	}
	return b
}

// With the key service down: cached subjects keep appending, a new subject
// gets 503 with nothing written, checkpoint signing fails and resumes.
func TestVaultOutage(t *testing.T) {
	h := start(t)
	em := h.emitter()
	h.register(em, "user-cached", "reg-c", 30)
	ks := h.app.KeyServer()
	addr := strings.TrimPrefix(h.app.VaultURL, "http://")
	if err := ks.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := h.streamLen()
	h.mustAppend(em, h.ev("privacy.subject.registered", "reg-c2", "user-cached", map[string]any{"residence": "CN", "age": 31}))
	r := h.post(em, h.ev("privacy.subject.registered", "reg-new", "user-new", map[string]any{"residence": "CN", "age": 31}))
	if r.Status != http.StatusServiceUnavailable || r.errCode() != "unavailable" {
		t.Fatalf("new subject during outage: %d %s", r.Status, r.Raw)
	}
	if got := h.streamLen(); got != before+1 {
		t.Fatalf("stream %d -> %d, want exactly the cached subject's event", before, got)
	}
	if err := h.app.Ledger.SignNow(context.Background()); err == nil {
		t.Fatal("signing succeeded with the key service down")
	}
	resp, err := http.Get(h.app.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d during outage", resp.StatusCode)
	}
	// The key service comes back on the same address and state.
	ks2, err := keyserver.Open(filepath.Join(h.dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks2.ListenAndServe(context.Background(), addr); err != nil {
		t.Fatal(err)
	}
	defer ks2.Shutdown(context.Background())
	h.mustAppend(em, h.ev("privacy.subject.registered", "reg-new", "user-new", map[string]any{"residence": "CN", "age": 31}))
	h.waitCheckpoint(int64(h.streamLen()))
	_ = app.Config{}
	_ = time.Second
}

// Erasure is physical: after a subject is erased and Custos stopped, no
// byte sequence of any of their sealed values, nor of their wrapped data
// key, remains anywhere under DATA/ — the NATS block files of the KV
// buckets included, where a purge or replacement used to leave them. Each
// sample is first seen on disk, so the scan is known to find what it looks
// for.
func TestErasureLeavesNoCiphertextOnDisk(t *testing.T) {
	h := start(t)
	em := h.emitter()
	const subj = "user-residue"
	// A subject who stays, so that the block files of the buckets live on
	// after the erasure (a block whose every message is gone is deleted,
	// which would hide a logical delete).
	h.mustAppend(em, h.ev("privacy.subject.registered", "reg-stay", "user-stays", map[string]any{"residence": "CN", "age": 40}))
	h.mustAppend(em, h.ev("privacy.subject.registered", "reg-res", subj, map[string]any{
		"residence": "CN", "birth_date": "2009-03-04",
		"guardian": map[string]any{"ref": "parent-res-1", "relation": "mother"},
	}))
	h.consent(em, subj, "c-res", map[string]any{"guardian": map[string]any{"ref": "parent-res-1", "relation": "mother"}})
	h.mustAppend(em, h.ev("privacy.data.collected", "col-res", subj, map[string]any{
		"categories": []string{"identity.contact", "identity.basic"}, "purpose": "service_provision", "storage_region": "CN", "retention": "P1Y",
		"fields": map[string]any{"email": "residue@example.cn", "name": "Residue Li", "phone": "+86 139 0000 0000"},
	}))
	h.mustAppend(em, h.ev("privacy.rights.requested", "rq-res", subj, map[string]any{"request_id": "res-1", "right": "deletion", "details": "please erase everything"}))

	ctx := context.Background()
	js, err := jetstream.New(h.app.Conn())
	if err != nil {
		t.Fatal(err)
	}
	p := h.app.Ledger.Pseudonym(subj)
	var samples [][]byte
	sample := func(what string, b []byte) {
		if len(b) < 40 {
			t.Fatalf("%s is only %d bytes", what, len(b))
		}
		// A stretch from the middle: past any fixed prefix, long enough to
		// occur nowhere by chance.
		samples = append(samples, append([]byte(nil), b[len(b)/2-12:len(b)/2+12]...))
	}
	piiKV, err := js.KeyValue(ctx, pii.PIIBucket)
	if err != nil {
		t.Fatal(err)
	}
	lister, err := piiKV.ListKeysFiltered(ctx, p+".>")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for k := range lister.Keys() {
		e, err := piiKV.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		sample("sealed "+k, e.Value())
		n++
	}
	if n < 3 {
		t.Fatalf("%d sealed values for the subject, want the identifier, the registration, the consent and the collection", n)
	}
	keysKV, err := js.KeyValue(ctx, pii.KeysBucket)
	if err != nil {
		t.Fatal(err)
	}
	ke, err := keysKV.Get(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	var entry struct {
		Wrapped string `json:"wrapped"`
	}
	if err := json.Unmarshal(ke.Value(), &entry); err != nil || entry.Wrapped == "" {
		t.Fatalf("key entry %s: %v", ke.Value(), err)
	}
	sample("wrapped key", []byte(entry.Wrapped))
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for _, s := range samples {
		for len(filesHolding(t, h.dir, s)) == 0 {
			select {
			case <-deadline:
				t.Fatalf("sample %x never reached the disk: the scan would prove nothing", s)
			case <-tick.C:
			}
		}
	}

	h.mustAppend(em, h.ev("privacy.data.erased", "er-res", subj, map[string]any{"scope": "all", "reason": "request"}))
	h.mustAppend(em, h.ev("privacy.data.collected", "col-stay", "user-stays", map[string]any{
		"categories": []string{"identity.contact"}, "purpose": "service_provision", "storage_region": "CN", "retention": "P1Y",
		"fields": map[string]any{"email": "stays@example.cn"},
	}))
	h.down()
	for _, s := range samples {
		if files := filesHolding(t, h.dir, s); len(files) > 0 {
			t.Errorf("after erasure, bytes %x of a sealed value or wrapped key remain in %v", s, files)
			for _, f := range files {
				b, _ := os.ReadFile(f)
				for _, r := range parseBlock(t, b) {
					if bytes.Contains(b[r.start:r.end], s) {
						t.Logf("record %d of %s: %q", r.seq, f, b[r.body:r.end-blkHashSize])
					}
				}
			}
		}
	}
}
