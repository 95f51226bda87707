package verify_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"custos.dev/ledger/checkpoint"
	"custos.dev/ledger/record"
	"custos.dev/ledger/tree"
	"custos.dev/ledger/verify"
)

const origin = "custos.test/ledger"

// base is when the test log's first event was recorded; event i was
// recorded i minutes later.
var base = time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)

type signer struct {
	note.Signer
	vkey string
}

func newSigner(t testing.TB, name string) signer {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return signer{s, vkey}
}

// ledger is a log of real records with its Merkle tree, as Custos stores it.
type ledger struct {
	bodies [][]byte // bodies[i] is the message at sequence i+1
	tree   *tree.Tree
}

func body(t testing.TB, seq int) []byte {
	t.Helper()
	at := base.Add(time.Duration(seq) * time.Minute)
	b, err := record.Marshal(&record.Record{
		Type: "privacy.data.used", ID: fmt.Sprintf("evt-%d", seq), Source: "/analytics",
		Time: record.FormatTime(at), Subject: "pseudonym", RecordedAt: record.FormatTime(at),
		Data: json.RawMessage(`{"categories":["usage.behavior"],"purpose":"analytics"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newLedger(t testing.TB, n int) *ledger {
	t.Helper()
	l := &ledger{tree: tree.New()}
	for seq := 1; seq <= n; seq++ {
		b := body(t, seq)
		l.bodies = append(l.bodies, b)
		if _, err := l.tree.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// checkpoint signs the tree of the first size leaves.
func (l *ledger) checkpoint(t testing.TB, s note.Signer, size int64) []byte {
	t.Helper()
	root, err := l.tree.Root(size)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := checkpoint.Sign(origin, size, root, s)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// source is test input: stored bodies and checkpoint notes in memory, in the
// order a Source yields them.
type source struct {
	seqs   []uint64
	bodies [][]byte
	notes  [][]byte
	err    error // returned by Events after the bodies
}

func (s *source) Events(ctx context.Context, fn func(uint64, []byte) error) error {
	for i := range s.seqs {
		if err := fn(s.seqs[i], s.bodies[i]); err != nil {
			return err
		}
	}
	return s.err
}

func (s *source) Checkpoints(ctx context.Context, fn func([]byte) error) error {
	for _, n := range s.notes {
		if err := fn(n); err != nil {
			return err
		}
	}
	return nil
}

// source yields the events from sequence first to last of l, and the
// checkpoints at the given sizes.
func (l *ledger) source(t testing.TB, s note.Signer, first, last int, sizes ...int64) *source {
	src := &source{}
	for seq := first; seq <= last; seq++ {
		src.seqs = append(src.seqs, uint64(seq))
		src.bodies = append(src.bodies, l.bodies[seq-1])
	}
	for _, n := range sizes {
		src.notes = append(src.notes, l.checkpoint(t, s, n))
	}
	return src
}

func (s *source) drop(seq uint64) *source {
	for i, q := range s.seqs {
		if q == seq {
			s.seqs = append(s.seqs[:i:i], s.seqs[i+1:]...)
			s.bodies = append(s.bodies[:i:i], s.bodies[i+1:]...)
			return s
		}
	}
	panic("no such sequence")
}

// alter changes one byte of the body at seq, keeping it a valid record.
func (s *source) alter(seq uint64) *source {
	for i, q := range s.seqs {
		if q == seq {
			b := []byte(strings.Replace(string(s.bodies[i]), `"purpose":"analytics"`, `"purpose":"analytica"`, 1))
			if _, err := record.Unmarshal(b); err != nil {
				panic(err)
			}
			s.bodies[i] = b
			return s
		}
	}
	panic("no such sequence")
}

func prefix(t testing.TB, l *ledger, n int) [][]byte {
	t.Helper()
	rf := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	r := rf.NewEmptyRange(0)
	for i := 0; i < n; i++ {
		if err := r.Append(rfc6962.DefaultHasher.HashLeaf(l.bodies[i]), nil); err != nil {
			t.Fatal(err)
		}
	}
	return r.Hashes()
}

func rootB64(t testing.TB, l *ledger, n int64) string {
	t.Helper()
	r, err := l.tree.Root(n)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(r[:])
}

func TestRun(t *testing.T) {
	key := newSigner(t, origin)
	other := newSigner(t, origin)
	l := newLedger(t, 12)
	now := base.Add(time.Hour) // event 9 was recorded 51 minutes before now
	type want struct {
		ok       bool
		firstBad uint64
		lastGood uint64
		problem  string // substring
	}
	for _, tc := range []struct {
		name string
		src  *source
		opts verify.Options
		want want
	}{
		{"intact", l.source(t, key, 1, 12, 4, 8, 12), verify.Options{}, want{ok: true, lastGood: 12}},
		{"intact, repeated checkpoint", l.source(t, key, 1, 12, 4, 4, 12, 12), verify.Options{}, want{ok: true, lastGood: 12}},
		{"altered in the second range", l.source(t, key, 1, 12, 4, 8, 12).alter(6), verify.Options{}, want{firstBad: 5, lastGood: 4, problem: "events 5..8"}},
		{"altered first event", l.source(t, key, 1, 12, 4, 8, 12).alter(1), verify.Options{}, want{firstBad: 1, lastGood: 0, problem: "events 1..4"}},
		{"altered last event", l.source(t, key, 1, 12, 4, 8, 12).alter(12), verify.Options{}, want{firstBad: 9, lastGood: 8, problem: "events 9..12"}},
		{"altered single-event range", l.source(t, key, 1, 12, 4, 5, 12).alter(5), verify.Options{}, want{firstBad: 5, lastGood: 4, problem: "event 5 does not match"}},
		{"missing sequence", l.source(t, key, 1, 12, 4, 8, 12).drop(7), verify.Options{}, want{firstBad: 7, lastGood: 6, problem: "sequence 7 is missing"}},
		{"missing first sequence", l.source(t, key, 1, 12, 4, 8, 12).drop(1), verify.Options{}, want{firstBad: 1, lastGood: 0, problem: "sequence 1 is missing"}},
		{"checkpoint beyond the log", l.source(t, key, 1, 10, 4, 8, 12), verify.Options{}, want{firstBad: 11, lastGood: 10, problem: "sequences 11..12 are missing"}},
		{"checkpoint by another key", func() *source {
			s := l.source(t, key, 1, 12, 4, 8, 12)
			s.notes[1] = l.checkpoint(t, other, 8)
			return s
		}(), verify.Options{}, want{problem: "checkpoint #2"}},
		{"signature stripped", func() *source {
			s := l.source(t, key, 1, 12, 4, 8, 12)
			text, _, _ := strings.Cut(string(s.notes[2]), "\n\n")
			s.notes[2] = []byte(text + "\n")
			return s
		}(), verify.Options{}, want{problem: "checkpoint #3"}},
		{"decreasing sizes", l.source(t, key, 1, 12, 4, 12, 8), verify.Options{}, want{problem: "smaller than the previous"}},
		{"unsigned tail too old", l.source(t, key, 1, 12, 4, 8), verify.Options{MaxUnsignedAge: 30 * time.Minute, Now: func() time.Time { return now }},
			want{firstBad: 9, lastGood: 8, problem: "no checkpoint covers them"}},
		{"unsigned tail young enough", l.source(t, key, 1, 12, 4, 8), verify.Options{MaxUnsignedAge: 2 * time.Hour, Now: func() time.Time { return now }},
			want{ok: true, lastGood: 12}},
		{"unsigned tail, age check off", l.source(t, key, 1, 12, 4, 8), verify.Options{Now: func() time.Time { return now.Add(1000 * time.Hour) }},
			want{ok: true, lastGood: 12}},
		{"nothing signed yet, too old", l.source(t, key, 1, 12), verify.Options{MaxUnsignedAge: 30 * time.Minute, Now: func() time.Time { return now }},
			want{firstBad: 1, lastGood: 0, problem: "no checkpoint covers them"}},
		{"mid-log start", l.source(t, key, 6, 12, 4, 8, 12), verify.Options{First: 6, Prefix: prefix(t, l, 5)}, want{ok: true, lastGood: 12}},
		{"mid-log start at a checkpoint", l.source(t, key, 6, 12, 5, 8, 12), verify.Options{First: 6, Prefix: prefix(t, l, 5)}, want{ok: true, lastGood: 12}},
		{"mid-log start, altered", l.source(t, key, 6, 12, 4, 8, 12).alter(7), verify.Options{First: 6, Prefix: prefix(t, l, 5)}, want{firstBad: 6, lastGood: 5, problem: "events 6..8"}},
		{"mid-log start, altered later", l.source(t, key, 6, 12, 4, 8, 12).alter(10), verify.Options{First: 6, Prefix: prefix(t, l, 5)}, want{firstBad: 9, lastGood: 8, problem: "events 9..12"}},
		{"mid-log start, prefix of another log", func() *source {
			return l.source(t, key, 6, 12, 8, 12)
		}(), verify.Options{First: 6, Prefix: func() [][]byte {
			p := prefix(t, l, 5)
			p[0] = rfc6962.DefaultHasher.HashLeaf([]byte("forged"))
			return p
		}()}, want{firstBad: 6, lastGood: 5, problem: "events 6..8"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.VerifierKey = key.vkey
			rep, err := verify.Run(context.Background(), tc.src, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK != tc.want.ok || rep.OK != (rep.Problem == "") {
				t.Fatalf("OK = %v, problem %q; want OK %v", rep.OK, rep.Problem, tc.want.ok)
			}
			if rep.FirstBadSeq != tc.want.firstBad || rep.LastGoodSeq != tc.want.lastGood {
				t.Fatalf("FirstBadSeq %d LastGoodSeq %d (%s), want %d and %d", rep.FirstBadSeq, rep.LastGoodSeq, rep.Problem, tc.want.firstBad, tc.want.lastGood)
			}
			if !strings.Contains(rep.Problem, tc.want.problem) {
				t.Fatalf("problem %q, want it to mention %q", rep.Problem, tc.want.problem)
			}
			if rep.OK {
				if rep.TreeSize != 12 || rep.Root != rootB64(t, l, 12) {
					t.Fatalf("tree size %d root %s, want 12 %s", rep.TreeSize, rep.Root, rootB64(t, l, 12))
				}
				if rep.UnsignedTail != 12-rep.LatestCheckpoint {
					t.Fatalf("unsigned tail %d with latest checkpoint %d", rep.UnsignedTail, rep.LatestCheckpoint)
				}
				if rep.Events != int64(len(tc.src.seqs)) || rep.Checkpoints != len(tc.src.notes) {
					t.Fatalf("events %d checkpoints %d", rep.Events, rep.Checkpoints)
				}
			}
		})
	}
}

func TestRunReportsSourceErrors(t *testing.T) {
	key := newSigner(t, origin)
	l := newLedger(t, 3)
	src := l.source(t, key, 1, 3, 3)
	src.err = errors.New("connection lost")
	rep, err := verify.Run(context.Background(), src, verify.Options{VerifierKey: key.vkey})
	if !errors.Is(err, verify.ErrSource) {
		t.Fatalf("Run = %+v, %v; want ErrSource", rep, err)
	}
	if rep != nil && rep.OK {
		t.Fatalf("a failed read reported OK: %+v", rep)
	}
}

// A prefix that is not the compact range of First-1 leaves is the caller's
// error, not an integrity failure.
func TestRunMalformedPrefix(t *testing.T) {
	key := newSigner(t, origin)
	l := newLedger(t, 12)
	rep, err := verify.Run(context.Background(), l.source(t, key, 6, 12, 8, 12), verify.Options{VerifierKey: key.vkey, First: 6, Prefix: prefix(t, l, 5)[:1]})
	if !errors.Is(err, verify.ErrSource) {
		t.Fatalf("Run = %+v, %v; want ErrSource", rep, err)
	}
}

func TestRunEmptyLedger(t *testing.T) {
	key := newSigner(t, origin)
	rep, err := verify.Run(context.Background(), &source{}, verify.Options{VerifierKey: key.vkey, MaxUnsignedAge: time.Second})
	if err != nil || !rep.OK || rep.Events != 0 || rep.TreeSize != 0 {
		t.Fatalf("Run = %+v, %v", rep, err)
	}
}

// A log longer than the reader's batches: the reader and the hasher run
// concurrently, a failure stops both, and progress is reported.
func TestRunLongLog(t *testing.T) {
	key := newSigner(t, origin)
	const n = 5000
	l := newLedger(t, n)
	var sizes []int64
	for s := int64(100); s <= n; s += 100 {
		sizes = append(sizes, s)
	}
	var progress []int64
	rep, err := verify.Run(context.Background(), l.source(t, key, 1, n, sizes...), verify.Options{
		VerifierKey: key.vkey, Progress: func(done int64) { progress = append(progress, done) },
	})
	if err != nil || !rep.OK || rep.Events != n || rep.Root != rootB64(t, l, n) {
		t.Fatalf("Run = %+v, %v", rep, err)
	}
	if len(progress) < 2 || progress[len(progress)-1] != n {
		t.Fatalf("progress %v", progress)
	}
	rep, err = verify.Run(context.Background(), l.source(t, key, 1, n, sizes...).alter(1750), verify.Options{VerifierKey: key.vkey})
	if err != nil || rep.OK || rep.FirstBadSeq != 1701 || rep.LastGoodSeq != 1700 {
		t.Fatalf("Run = %+v, %v; want first bad 1701", rep, err)
	}
}

// A signed checkpoint of the empty tree carries RFC 6962's empty root,
// SHA-256(""); it is valid, and one of the empty tree with another root is not.
func TestRunEmptyTreeCheckpoint(t *testing.T) {
	key := newSigner(t, origin)
	l := newLedger(t, 3)
	rep, err := verify.Run(context.Background(), l.source(t, key, 1, 3, 0, 3), verify.Options{VerifierKey: key.vkey})
	if err != nil || !rep.OK || rep.LatestCheckpoint != 3 {
		t.Fatalf("Run = %+v, %v", rep, err)
	}
	forged, err := checkpoint.Sign(origin, 0, tlog.RecordHash(nil), key)
	if err != nil {
		t.Fatal(err)
	}
	src := l.source(t, key, 1, 3, 3)
	src.notes = append([][]byte{forged}, src.notes...)
	rep, err = verify.Run(context.Background(), src, verify.Options{VerifierKey: key.vkey})
	if err != nil || rep.OK || rep.FirstBadSeq != 1 {
		t.Fatalf("Run = %+v, %v; want a failure", rep, err)
	}
}
