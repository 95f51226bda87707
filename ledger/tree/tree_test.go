package tree

import (
	"fmt"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/tlog"
)

// The proofs are checked with transparency-dev/merkle, an independent RFC
// 6962 implementation, so a bug shared with tlog's generator would show.
func TestProofsAgainstIndependentVerifier(t *testing.T) {
	tr := New()
	const n = 77
	leaves := make([][]byte, n)
	for i := range leaves {
		leaves[i] = []byte(fmt.Sprintf(`{"leaf":%d}`, i))
		if _, err := tr.Append(leaves[i]); err != nil {
			t.Fatal(err)
		}
	}
	for size := int64(1); size <= n; size++ {
		root, err := tr.Root(size)
		if err != nil {
			t.Fatal(err)
		}
		for i := int64(0); i < size; i++ {
			p, err := tr.InclusionProof(i, size)
			if err != nil {
				t.Fatal(err)
			}
			leaf := rfc6962.DefaultHasher.HashLeaf(leaves[i])
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(i), uint64(size), leaf, hashes(p), root[:]); err != nil {
				t.Fatalf("inclusion %d/%d: %v", i, size, err)
			}
		}
		for m := int64(1); m <= size; m++ {
			old, _ := tr.Root(m)
			p, err := tr.ConsistencyProof(m, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(m), uint64(size), hashes(p), old[:], root[:]); err != nil {
				t.Fatalf("consistency %d->%d: %v", m, size, err)
			}
		}
	}
	if _, err := tr.InclusionProof(5, n+1); err == nil {
		t.Fatal("proof beyond the tree accepted")
	}
	if _, err := tr.ConsistencyProof(10, 5); err == nil {
		t.Fatal("backwards consistency proof accepted")
	}
}

func hashes[T ~[]tlog.Hash](p T) [][]byte {
	out := make([][]byte, len(p))
	for i := range p {
		out[i] = p[i][:]
	}
	return out
}

func BenchmarkAppend(b *testing.B) {
	tr := New()
	body := make([]byte, 600)
	for b.Loop() {
		if _, err := tr.Append(body); err != nil {
			b.Fatal(err)
		}
	}
}
