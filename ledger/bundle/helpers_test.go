package bundle_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"custos.dev/ledger/bundle"
	"custos.dev/ledger/checkpoint"
	"custos.dev/ledger/record"
	"custos.dev/ledger/tree"
)

const origin = "custos.test/ledger"

// Test-only note keys (never used outside tests); the fuzz corpus holds
// bundles they signed.
const (
	testSKey      = "PRIVATE+KEY+custos.test/ledger+0ad7614c+AbHngDVTRWM9fmeZN1AJ0roXO7zivhPH4vGRYfnglIgW"
	testVKey      = "custos.test/ledger+0ad7614c+AdVjrpQkrG3XIRehUQ8KZiOLSyFVC4o5MgJBj4LZ7LfK"
	otherTestSKey = "PRIVATE+KEY+custos.test/other+d076ae50+AUWda+fU+MsGwpyeL7fpFmLmk6wkY+GODg0bvXyx9OUN"
	otherTestVKey = "custos.test/other+d076ae50+Aa3lIKbMITzzwfuRRcHMbnYszV5Hp5HMOygeGZ26ppjP"
)

// The test log: logSize real records, checkpoints (LEDGER_CHECKPOINTS
// sequences 1, 2, 3) at cpSizes, and a bundle of events fromSeq..toSeq.
const (
	logSize = 10
	fromSeq = 2
	toSeq   = 9
)

var cpSizes = []int64{3, 6, 10}

type testLog struct {
	bodies [][]byte
	tree   *tree.Tree
	signer note.Signer
}

func mustSigner(t testing.TB, skey string) note.Signer {
	t.Helper()
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newLog(t testing.TB) *testLog {
	t.Helper()
	l := &testLog{tree: tree.New(), signer: mustSigner(t, testSKey)}
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for seq := 1; seq <= logSize; seq++ {
		at := record.FormatTime(base.Add(time.Duration(seq) * time.Hour))
		b, err := record.Marshal(&record.Record{
			Type: "privacy.data.shared", ID: fmt.Sprintf("share-%d", seq), Source: "/partners", Time: at, Subject: "pseudonym",
			RecordedAt: at, Data: json.RawMessage(`{"basis":"consent","categories":["contact"],"purpose":"marketing","recipient":"acme","recipient_kind":"processor","region":"CN"}`),
		})
		if err != nil {
			t.Fatal(err)
		}
		l.bodies = append(l.bodies, b)
		if _, err := l.tree.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func rebuild(t testing.TB, bodies [][]byte) *tree.Tree {
	t.Helper()
	tr := tree.New()
	for _, b := range bodies {
		if _, err := tr.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	return tr
}

func (l *testLog) note(t testing.TB, s note.Signer, size int64) string {
	t.Helper()
	root, err := l.tree.Root(size)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := checkpoint.Sign(origin, size, root, s)
	if err != nil {
		t.Fatal(err)
	}
	return string(msg)
}

func b64(hs []tlog.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	return out
}

// contents is what `custos audit export` would put in a bundle of the test
// log: events fromSeq..toSeq and checkpoints at cpSizes.
func (l *testLog) contents(t testing.TB) *bundle.Contents {
	return l.contentsOf(t, fromSeq, toSeq, cpSizes)
}

// contentsOf is a bundle of events from..to with checkpoints at sizes.
func (l *testLog) contentsOf(t testing.TB, from, to uint64, sizes []int64) *bundle.Contents {
	t.Helper()
	latest := sizes[len(sizes)-1]
	c := &bundle.Contents{Manifest: bundle.Manifest{
		Origin: origin, VerifierKey: testVKey, TreeSize: latest, FromSeq: from, ToSeq: to,
		FromTime: "2026-11-01T02:00:00Z", ToTime: "2026-11-01T10:00:00Z", CreatedAt: "2026-11-29T10:00:00Z",
	}}
	for seq := from; seq <= to; seq++ {
		c.Events = append(c.Events, bundle.Event{Seq: seq, Event: l.bodies[seq-1]})
		p, err := l.tree.InclusionProof(int64(seq-1), latest)
		if err != nil {
			t.Fatal(err)
		}
		c.Inclusion = append(c.Inclusion, bundle.Inclusion{Seq: seq, TreeSize: latest, Hashes: b64(p)})
	}
	for i, size := range sizes {
		c.Checkpoints = append(c.Checkpoints, bundle.Checkpoint{Seq: uint64(i + 1), Note: l.note(t, l.signer, size)})
		if i > 0 {
			p, err := l.tree.ConsistencyProof(sizes[i-1], size)
			if err != nil {
				t.Fatal(err)
			}
			c.Consistency = append(c.Consistency, bundle.Consistency{From: sizes[i-1], To: size, Hashes: b64(p)})
		}
	}
	return c
}

func write(t testing.TB, c *bundle.Contents) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := bundle.Write(&buf, c); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// entry is one member of a bundle's tar, for tests that forge bundles below
// the level of Write.
type entry struct {
	hdr  tar.Header
	data []byte
}

func unpack(t testing.TB, b []byte) []entry {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var out []entry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, entry{*h, data})
	}
}

func pack(t testing.TB, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		h := e.hdr
		h.Size = int64(len(e.data))
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write(e.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// redigest replaces one file of a packed bundle and makes the manifest's
// digest match it, as a forger who rewrites the whole file would.
func redigest(t testing.TB, entries []entry, name string, data []byte) []entry {
	t.Helper()
	out := make([]entry, len(entries))
	copy(out, entries)
	mi := -1
	for i := range out {
		switch out[i].hdr.Name {
		case name:
			out[i].data = data
		case bundle.ManifestFile:
			mi = i
		}
	}
	if mi < 0 {
		t.Fatal("no manifest")
	}
	var m bundle.Manifest
	if err := json.Unmarshal(out[mi].data, &m); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	m.Files[name] = "sha256:" + hex.EncodeToString(sum[:])
	mb, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out[mi].data = mb
	return out
}
