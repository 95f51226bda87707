package e2e_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/highwayhash"
	"github.com/nats-io/nats.go/jetstream"

	"custos.dev/ledger"
	"custos.dev/services/app"
	"custos.dev/services/cli"
	"custos.dev/services/natsd"
)

// blockRecord is one message record in a JetStream file-store block, as
// nats-server v2 writes it (filestore.go, writeMsgRecordLocked):
// total_len(4) seq(8) ts(8) subj_len(2) subj [hdr_len(4) hdr] msg hash(8),
// little endian, the high bit of total_len set when there are headers.
type blockRecord struct {
	seq              uint64
	start, body, end int // the record is [start,end), its message body [body, end-8)
	hashedFrom       int // where the checksummed headers and body begin
}

const (
	blkHdrSize  = 22
	blkHashSize = 8
	blkHbit     = 1 << 31
)

func parseBlock(t *testing.T, buf []byte) []blockRecord {
	t.Helper()
	le := binary.LittleEndian
	var out []blockRecord
	for i := 0; i < len(buf); {
		if i+blkHdrSize > len(buf) {
			t.Fatalf("block overrun at %d", i)
		}
		rl := int(le.Uint32(buf[i:]))
		hasHdr := rl&blkHbit != 0
		rl &^= blkHbit
		seq := le.Uint64(buf[i+4:]) &^ (1<<63 | 1<<62)
		slen := int(le.Uint16(buf[i+20:]))
		body := i + blkHdrSize + slen
		from := body
		if hasHdr {
			hlen := int(le.Uint32(buf[body:]))
			from = body + 4
			body = from + hlen
		}
		out = append(out, blockRecord{seq: seq, start: i, body: body, end: i + rl, hashedFrom: from})
		i += rl
	}
	return out
}

// rehash recomputes a record's checksum the way nats-server does, as an
// insider who knows the store format would after editing it.
func rehash(buf []byte, r blockRecord, stream string, blockIndex uint32) {
	key := sha256.Sum256([]byte(fmt.Sprintf("%s-%d", stream, blockIndex)))
	hh, _ := highwayhash.NewDigest64(key[:])
	slen := int(binary.LittleEndian.Uint16(buf[r.start+20:]))
	hh.Write(buf[r.start+4 : r.start+20])
	hh.Write(buf[r.start+blkHdrSize : r.start+blkHdrSize+slen])
	hh.Write(buf[r.hashedFrom : r.end-blkHashSize])
	copy(buf[r.end-blkHashSize:r.end], hh.Sum(nil))
}

// ledgerStores lists the directories holding a LEDGER file store: the
// ledger stream itself and every copy of it (the auditors' mirror), all of
// which an insider with the disk would change alike.
func ledgerStores(t *testing.T, dir string) []string {
	t.Helper()
	stores, err := filepath.Glob(filepath.Join(dir, "nats", "jetstream", "*", "streams", ledger.StreamName, "msgs"))
	if err != nil || len(stores) == 0 {
		t.Fatalf("no LEDGER store under %s (%v)", dir, err)
	}
	return stores
}

// storeBlock is the newest block file of one store.
type storeBlock struct {
	path  string
	index uint32
	buf   []byte
	recs  []blockRecord
}

func (b *storeBlock) record(t *testing.T, seq uint64) blockRecord {
	t.Helper()
	for _, r := range b.recs {
		if r.seq == seq {
			return r
		}
	}
	t.Fatalf("%s holds no record %d", b.path, seq)
	return blockRecord{}
}

func (b *storeBlock) write(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(b.path, b.buf, 0o600); err != nil {
		t.Fatal(err)
	}
}

// tamperFixture is a stopped Custos whose store holds a signed ledger.
type tamperFixture struct {
	h           *harness
	checkpoints []int64 // sizes signed, oldest first
}

// newTamperFixture fills a ledger in rounds, signing a checkpoint after
// each, proves it verifies, and stops Custos. Checkpoints are signed only
// when asked, so their sizes are known exactly.
func newTamperFixture(t *testing.T, rounds ...int) *tamperFixture {
	t.Helper()
	h := start(t, func(c *app.Config) { c.CheckpointInterval = time.Hour })
	f := &tamperFixture{h: h}
	em := h.emitter()
	for _, n := range rounds {
		h.fill(em, n)
		size := int64(h.streamLen())
		h.waitCheckpoint(size)
		f.checkpoints = append(f.checkpoints, size)
	}
	h.waitMirror()
	if rep, code := f.verifyNATS(t); code != 0 || !rep.OK || rep.Events != f.checkpoints[len(f.checkpoints)-1] {
		t.Fatalf("the untouched ledger does not verify: exit %d %+v", code, rep)
	}
	h.down()
	return f
}

// verifyReport is the JSON output of custos verify.
type verifyReport struct {
	OK          bool   `json:"ok"`
	Events      int64  `json:"events"`
	FirstBadSeq uint64 `json:"first_bad_seq"`
	LastGoodSeq uint64 `json:"last_good_seq"`
	Problem     string `json:"problem"`
}

// verifyNATS runs custos verify straight against NATS with only the
// auditor's credentials and the verifier key file, as an auditor would.
func (f *tamperFixture) verifyNATS(t *testing.T) (verifyReport, int) {
	t.Helper()
	// Bounded, so that a verifier that hangs on a damaged store fails the
	// test instead of stalling it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code := cli.Main(ctx, []string{"verify", "--nats-creds", filepath.Join(f.h.dir, "nats-auditor.json"),
		"--verifier-key", "@" + filepath.Join(f.h.dir, "verifier.key"), "--max-unsigned-age", "0", "--output", "json"},
		strings.NewReader(""), &out, &errOut, func(string) string { return "" })
	if ctx.Err() != nil {
		t.Fatalf("verify did not finish within 10 s on the damaged store (exit %d; docs/threat-model.md, Known gaps):\n%s", code, errOut.String())
	}
	var rep verifyReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("verify: exit %d, output not a report: %v\n%s\n%s", code, err, out.String(), errOut.String())
	}
	return rep, code
}

// startOnTampered tries to start Custos on the tampered store and
// returns the error it refused with.
func (f *tamperFixture) startOnTampered(t *testing.T) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := app.Start(ctx, f.h.cfg)
	if err == nil {
		_ = a.Close(ctx)
		t.Fatal("Custos started on a tampered store")
	}
	return err
}

// plainNATS serves the tampered store with a NATS server and nothing of
// Custos, rewriting DATA/nats-auditor.json with its address.
func (f *tamperFixture) plainNATS(t *testing.T) jetstream.Stream {
	t.Helper()
	srv, err := natsd.Start(natsd.Config{Dir: f.h.dir, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("nats-server on the tampered store: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Auditor.Connect("tamper-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	s, err := js.Stream(context.Background(), ledger.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// lastBlocks reads the newest block file of every LEDGER store.
func (f *tamperFixture) lastBlocks(t *testing.T) []*storeBlock {
	t.Helper()
	var out []*storeBlock
	for _, store := range ledgerStores(t, f.h.dir) {
		blks, _ := filepath.Glob(filepath.Join(store, "*.blk"))
		idx := func(p string) int { n, _ := strconv.Atoi(strings.TrimSuffix(filepath.Base(p), ".blk")); return n }
		sort.Slice(blks, func(i, j int) bool { return idx(blks[i]) < idx(blks[j]) })
		if len(blks) == 0 {
			t.Fatalf("no block in %s", store)
		}
		b := &storeBlock{path: blks[len(blks)-1], index: uint32(idx(blks[len(blks)-1]))}
		var err error
		if b.buf, err = os.ReadFile(b.path); err != nil {
			t.Fatal(err)
		}
		b.recs = parseBlock(t, b.buf)
		out = append(out, b)
	}
	return out
}

// alterAge changes the first digit of the "age" in record r's body, keeping
// the body valid JSON of the same length.
func alterAge(t *testing.T, buf []byte, r blockRecord) {
	t.Helper()
	body := buf[r.body : r.end-blkHashSize]
	i := bytes.Index(body, []byte(`"age":`))
	if i < 0 {
		t.Fatalf("record %d has no age: %s", r.seq, body)
	}
	d := &body[i+len(`"age":`)]
	if *d == '9' {
		*d = '8'
	} else {
		*d = '9'
	}
}

// ageSeq picks a registration near the middle of (after, upTo].
func ageSeq(t *testing.T, b *storeBlock, after, upTo int64) uint64 {
	t.Helper()
	for _, r := range b.recs {
		if int64(r.seq) >= (after+upTo)/2 && int64(r.seq) <= upTo && bytes.Contains(b.buf[r.body:r.end], []byte(`"age":`)) {
			return r.seq
		}
	}
	t.Fatalf("no registration in (%d, %d]", after, upTo)
	return 0
}

// A digit changed in one stored record's body, in the ledger stream and
// in the auditors' mirror alike, with NATS's checksum left as it was. NATS
// keeps the stream's message count (its index is trusted on restart) but
// no longer delivers the record: the checksum fails, and a direct get says
// not found. Custos refuses to start at the gap, and an auditor's verify,
// against a plain NATS server on the same store, names the exact sequence.
func TestTamperAlteredRecord(t *testing.T) {
	f := newTamperFixture(t, 200)
	size := f.checkpoints[0]
	blocks := f.lastBlocks(t)
	k := ageSeq(t, blocks[0], 0, size)
	for _, b := range blocks {
		alterAge(t, b.buf, b.record(t, k))
		b.write(t)
	}

	err := f.startOnTampered(t)
	if !errors.Is(err, ledger.ErrIntegrity) || !strings.Contains(err.Error(), fmt.Sprintf("expected sequence %d, stream delivered %d", k, k+1)) {
		t.Fatalf("start on a store with record %d altered: %v; want an integrity error at sequence %d", k, err, k)
	}

	s := f.plainNATS(t)
	if _, err := s.GetMsg(context.Background(), k); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("NATS get of the altered record %d: %v; want not found (checksum failure)", k, err)
	}
	info, _ := s.Info(context.Background())
	t.Logf("NATS stream state after the alteration: %d messages, %d deleted, last %d", info.State.Msgs, info.State.NumDeleted, info.State.LastSeq)
	rep, code := f.verifyNATS(t)
	want := fmt.Sprintf("sequence %d is missing (next present is %d)", k, k+1)
	if code != 1 || rep.OK || rep.FirstBadSeq != k || rep.LastGoodSeq != k-1 || rep.Problem != want {
		t.Fatalf("verify: exit %d %+v; want exit 1 naming sequence %d: %q", code, rep, k, want)
	}
}

// The same alteration by an insider who also recomputes NATS's record
// checksum (its key is derived from the stream name, so it is no secret).
// NATS now serves the altered body; Custos refuses to start because the
// replayed tree no longer matches the last signed checkpoint, and verify
// names the checkpoint range holding the altered record.
func TestTamperAlteredRecordRehashed(t *testing.T) {
	f := newTamperFixture(t, 100, 100)
	c1, c2 := f.checkpoints[0], f.checkpoints[1]
	blocks := f.lastBlocks(t)
	k := ageSeq(t, blocks[0], c1, c2)
	var orig []byte
	for _, b := range blocks {
		r := b.record(t, k)
		orig = append([]byte(nil), b.buf[r.body:r.end-blkHashSize]...)
		alterAge(t, b.buf, r)
		rehash(b.buf, r, ledger.StreamName, b.index)
		b.write(t)
	}

	err := f.startOnTampered(t)
	if !errors.Is(err, ledger.ErrIntegrity) || !strings.Contains(err.Error(), fmt.Sprintf("does not match the last checkpoint at size %d", c2)) {
		t.Fatalf("start on a store with record %d altered and rehashed: %v; want an integrity error against checkpoint %d", k, err, c2)
	}

	s := f.plainNATS(t)
	m, err := s.GetMsg(context.Background(), k)
	if err != nil || bytes.Equal(m.Data, orig) {
		t.Fatalf("NATS should serve the rehashed, altered record %d: %v", k, err)
	}
	rep, code := f.verifyNATS(t)
	want := fmt.Sprintf("events %d..%d do not match the signed checkpoint at tree size %d", c1+1, c2, c2)
	if code != 1 || rep.OK || rep.FirstBadSeq != uint64(c1+1) || !strings.Contains(rep.Problem, want) {
		t.Fatalf("verify: exit %d %+v; want exit 1 with %q (record %d was altered)", code, rep, want, k)
	}
}

// The tail of the store removed, from the ledger stream and the auditors'
// mirror alike. NATS rebuilds the block from what is left and marks the
// lost sequences deleted (LEDGER denies deletes, so no deleted sequence
// can be legitimate). verify reports the shortfall against the last
// signed checkpoint, naming the first missing sequence.
func TestTamperTruncatedTail(t *testing.T) {
	for _, c := range []struct {
		name string
		cut  func(t *testing.T, b *storeBlock) (firstMissing uint64)
	}{
		{"truncated block", func(t *testing.T, b *storeBlock) uint64 {
			r := b.recs[len(b.recs)-25]
			if err := os.Truncate(b.path, int64(r.start)); err != nil {
				t.Fatal(err)
			}
			return r.seq
		}},
		{"deleted block", func(t *testing.T, b *storeBlock) uint64 {
			if err := os.Remove(b.path); err != nil {
				t.Fatal(err)
			}
			return b.recs[0].seq
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newTamperFixture(t, 200)
			size := f.checkpoints[0]
			var k uint64
			for _, b := range f.lastBlocks(t) {
				k = c.cut(t, b)
			}

			err := f.startOnTampered(t)
			if !errors.Is(err, ledger.ErrIntegrity) {
				t.Errorf("start on a store missing sequences %d..%d: %v; want an integrity error (ledger.Open waits for the stream's last sequence, which was lost)", k, size, err)
			}

			s := f.plainNATS(t)
			info, _ := s.Info(context.Background())
			t.Logf("NATS stream state: %d messages, %d deleted, last %d", info.State.Msgs, info.State.NumDeleted, info.State.LastSeq)
			rep, code := f.verifyNATS(t)
			want := fmt.Sprintf("the ledger ends at sequence %d but a signed checkpoint covers %d events: sequences %d..%d are missing", k-1, size, k, size)
			if code != 1 || rep.OK || rep.FirstBadSeq != k || rep.Problem != want {
				t.Fatalf("verify: exit %d %+v; want exit 1 with %q", code, rep, want)
			}
		})
	}
}

// A consent withdrawal moved onto another data subject's NATS subject by an
// insider who also recomputes NATS's checksum. The body, which the Merkle
// tree covers, still names its own subject, so every checkpoint still
// verifies; only the NATS subject changed. Custos used to project the
// withdrawal onto the wrong subject and allow a transfer after it. It must
// refuse to start, naming the sequence, and an auditor's verify against a
// plain NATS server on the same store must name it too.
func TestTamperMovedSubject(t *testing.T) {
	h := start(t, func(c *app.Config) { c.CheckpointInterval = time.Hour })
	em := h.emitter()
	a, b := "user-moved-a", "user-moved-b"
	h.register(em, a, "reg-moved-a", 30)
	h.register(em, b, "reg-moved-b", 30)
	h.consent(em, a, "c-moved-a", map[string]any{"destinations": []string{"SG"}, "recipients": []string{"acme-sg"}})
	w := h.mustAppend(em, h.ev("privacy.consent.withdrawn", "wd-moved-a", a, map[string]any{"consent_id": "c-moved-a"})).seq()
	h.mustDeny(em, h.transfer(a, "tr-moved-1", "SG", "standard_contract"), "CONSENT_WITHDRAWN")
	size := int64(h.streamLen())
	h.waitCheckpoint(size)
	h.waitMirror()
	pa, pb := h.app.Ledger.Pseudonym(a), h.app.Ledger.Pseudonym(b)
	if len(pa) != len(pb) {
		t.Fatalf("pseudonyms of different lengths: %s %s", pa, pb)
	}
	f := &tamperFixture{h: h, checkpoints: []int64{size}}
	h.down()

	for _, blk := range f.lastBlocks(t) {
		r := blk.record(t, w)
		subj := blk.buf[r.start+blkHdrSize : r.start+blkHdrSize+int(binary.LittleEndian.Uint16(blk.buf[r.start+20:]))]
		i := bytes.Index(subj, []byte(pa))
		if i < 0 {
			t.Fatalf("record %d's NATS subject %s does not name %s", w, subj, pa)
		}
		copy(subj[i:], pb)
		rehash(blk.buf, r, ledger.StreamName, blk.index)
		blk.write(t)
	}

	err := f.startOnTampered(t)
	want := fmt.Sprintf("sequence %d is stored under NATS subject %s but its body belongs under %s", w,
		ledger.SubjectFor(pb, "privacy.consent.withdrawn"), ledger.SubjectFor(pa, "privacy.consent.withdrawn"))
	if !errors.Is(err, ledger.ErrIntegrity) || !strings.Contains(err.Error(), want) {
		t.Fatalf("start on a store with record %d moved to another subject: %v; want an integrity error %q", w, err, want)
	}

	s := f.plainNATS(t)
	if m, err := s.GetMsg(context.Background(), w); err != nil || m.Subject != ledger.SubjectFor(pb, "privacy.consent.withdrawn") {
		t.Fatalf("NATS should serve the moved record %d under the other subject: %v", w, err)
	}
	rep, code := f.verifyNATS(t)
	if code != 1 || rep.OK || rep.FirstBadSeq != w || rep.Problem != want {
		t.Fatalf("verify: exit %d %+v; want exit 1 naming sequence %d: %q", code, rep, w, want)
	}
}
