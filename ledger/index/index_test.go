package index_test

import (
	"errors"
	"fmt"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"custos.dev/ledger/index"
	"custos.dev/ledger/state"
	"custos.dev/ledger/tree"
)

func open(t *testing.T, dir string) *index.DB {
	t.Helper()
	db, err := index.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// A tree on disk must answer exactly what the in-memory tree answers, for
// every size and every leaf, including sizes that are not powers of two.
func TestTreeOnDiskMatchesMemory(t *testing.T) {
	db := open(t, t.TempDir())
	disk, mem := tree.NewOn(db.TreeHashes()), tree.New()
	const n = 300
	for i := 0; i < n; i++ {
		body := []byte(fmt.Sprintf(`{"leaf":%d}`, i))
		if _, err := disk.Append(body); err != nil {
			t.Fatal(err)
		}
		mem.Append(body)
	}
	for _, size := range []int64{1, 2, 3, 7, 64, 129, 255, 256, 257, n} {
		dr, err := disk.Root(size)
		if err != nil {
			t.Fatal(err)
		}
		mr, _ := mem.Root(size)
		if dr != mr {
			t.Fatalf("root of size %d differs", size)
		}
		for _, i := range []int64{0, size / 2, size - 1} {
			p, err := disk.InclusionProof(i, size)
			if err != nil {
				t.Fatal(err)
			}
			leaf, _ := disk.LeafHash(i)
			if err := tlog.CheckRecord(p, size, dr, i, leaf); err != nil {
				t.Fatalf("inclusion of %d in %d: %v", i, size, err)
			}
		}
		p, err := disk.ConsistencyProof(size, n)
		if err != nil {
			t.Fatal(err)
		}
		full, _ := disk.Root(n)
		if err := tlog.CheckTree(p, n, full, size, dr); err != nil {
			t.Fatalf("consistency %d→%d: %v", size, n, err)
		}
	}
	if _, err := disk.InclusionProof(0, n+1); !errors.Is(err, tree.ErrRange) {
		t.Fatalf("proof past the end: %v", err)
	}
}

func TestIDsKeepTheFirstEntry(t *testing.T) {
	ids := open(t, t.TempDir()).IDs()
	k := [16]byte{1, 2, 3}
	if _, found, err := ids.Get(k); err != nil || found {
		t.Fatalf("empty index: found=%v err=%v", found, err)
	}
	first := state.IDEntry{Seq: 7, MAC: [16]byte{9}}
	if err := ids.Add(k, first); err != nil {
		t.Fatal(err)
	}
	if err := ids.Add(k, state.IDEntry{Seq: 8, MAC: [16]byte{10}}); err != nil {
		t.Fatal(err)
	}
	if e, found, err := ids.Get(k); err != nil || !found || e != first {
		t.Fatalf("Get = %+v, %v, %v; want the first entry %+v", e, found, err, first)
	}
	if _, found, _ := ids.Get([16]byte{1, 2, 4}); found {
		t.Fatal("a key never added was found")
	}
}

// Adds are blind merges: the first must win however the database has
// stored them, in its memtable or in tables flushed between them.
func TestIDsKeepTheFirstEntryAcrossFlushes(t *testing.T) {
	db := open(t, t.TempDir())
	ids := db.IDs()
	k := [16]byte{7}
	for seq := uint64(1); seq <= 4; seq++ {
		if err := ids.Add(k, state.IDEntry{Seq: seq}); err != nil {
			t.Fatal(err)
		}
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
		if e, found, err := ids.Get(k); err != nil || !found || e.Seq != 1 {
			t.Fatalf("after %d adds: %+v, %v, %v; want seq 1", seq, e, found, err)
		}
	}
	if err := ids.Add(k, state.IDEntry{Seq: 5}); err != nil {
		t.Fatal(err)
	}
	if err := db.Compact(); err != nil {
		t.Fatal(err)
	}
	if e, found, err := ids.Get(k); err != nil || !found || e.Seq != 1 {
		t.Fatalf("after a compaction: %+v, %v, %v; want seq 1", e, found, err)
	}
}

// The index is a cache of the stream: whatever a previous process left in
// the directory is gone after Open, since the follower refills it.
func TestOpenStartsEmpty(t *testing.T) {
	dir := t.TempDir()
	db, err := index.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	k := [16]byte{42}
	if err := db.IDs().Add(k, state.IDEntry{Seq: 1}); err != nil {
		t.Fatal(err)
	}
	if err := db.TreeHashes().AppendHashes([]tlog.Hash{{1}}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	again := open(t, dir)
	if _, found, err := again.IDs().Get(k); err != nil || found {
		t.Fatalf("after reopening: found=%v err=%v", found, err)
	}
	if _, err := again.TreeHashes().ReadHashes([]int64{0}); !errors.Is(err, tree.ErrRange) {
		t.Fatalf("stored hash after reopening: %v", err)
	}
}

func TestOpenRefusesADirectoryInUse(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	k := [16]byte{5}
	db.IDs().Add(k, state.IDEntry{Seq: 3})
	if second, err := index.Open(dir, nil); !errors.Is(err, index.ErrInUse) {
		if second != nil {
			second.Close()
		}
		t.Fatalf("second Open: %v, want ErrInUse", err)
	}
	// ...and the refused Open removed nothing from the running one.
	if e, found, err := db.IDs().Get(k); err != nil || !found || e.Seq != 3 {
		t.Fatalf("after a refused Open: %+v, %v, %v", e, found, err)
	}
}

func TestClosedIndexFailsInsteadOfPanicking(t *testing.T) {
	db, err := index.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ids, hashes := db.IDs(), db.TreeHashes()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ids.Get([16]byte{}); !errors.Is(err, index.ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	if err := ids.Add([16]byte{}, state.IDEntry{Seq: 1}); !errors.Is(err, index.ErrClosed) {
		t.Fatalf("Add after Close: %v", err)
	}
	if err := hashes.AppendHashes([]tlog.Hash{{}}); !errors.Is(err, index.ErrClosed) {
		t.Fatalf("AppendHashes after Close: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// BenchmarkAppendLeaf is the tree's cost per event on disk, next to the
// in-memory tree it replaces.
func BenchmarkAppendLeaf(b *testing.B) {
	for _, c := range []struct {
		name string
		tree func(b *testing.B) *tree.Tree
	}{
		{"memory", func(*testing.B) *tree.Tree { return tree.New() }},
		{"disk", func(b *testing.B) *tree.Tree {
			db, err := index.Open(b.TempDir(), nil)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			return tree.NewOn(db.TreeHashes())
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			tr := c.tree(b)
			var h tlog.Hash
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				h[0], h[1], h[2] = byte(i), byte(i>>8), byte(i>>16)
				if _, err := tr.AppendLeafHash(h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkIDs(b *testing.B) {
	ids := func() state.IDStore {
		db, err := index.Open(b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		return db.IDs()
	}()
	var k [16]byte
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		k[0], k[1], k[2], k[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
		if err := ids.Add(k, state.IDEntry{Seq: uint64(i)}); err != nil {
			b.Fatal(err)
		}
		if _, found, err := ids.Get(k); err != nil || !found {
			b.Fatal(found, err)
		}
	}
}

// A subject's records come back in sequence order, and only its own, even
// for a pseudonym that is a prefix of another.
func TestSubjectRecords(t *testing.T) {
	recs := open(t, t.TempDir()).SubjectRecords()
	adds := []struct {
		p    string
		seq  uint64
		body string
	}{{"ab", 300, "c"}, {"abc", 2, "x"}, {"ab", 1, "a"}, {"ab", 256, "b"}, {"a", 5, "y"}}
	for _, a := range adds {
		if err := recs.Add(a.p, a.seq, []byte(a.body)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := recs.Records("ab")
	if err != nil {
		t.Fatal(err)
	}
	want := []index.Record{{Seq: 1, Body: []byte("a")}, {Seq: 256, Body: []byte("b")}, {Seq: 300, Body: []byte("c")}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Records(ab) = %v, want %v", got, want)
	}
	if got, _ := recs.Records("nobody"); len(got) != 0 {
		t.Fatalf("Records of an unknown subject = %v", got)
	}
}
