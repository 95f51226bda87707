// Package tree keeps the RFC 6962 Merkle tree of the ledger and answers
// inclusion and consistency proofs from stored hashes, so a proof for any
// leaf of a large tree costs O(log n) hash reads, never a recompute. The
// stored hashes live in a HashStore: in memory by default, on disk for a
// ledger that must not hold two hashes per event in memory.
//
// The hashing and proof algorithms are golang.org/x/mod/sumdb/tlog's: leaf
// hash SHA-256(0x00 || body), interior SHA-256(0x01 || left || right), which
// is RFC 6962 §2.1. Leaf i of the log is the message at stream sequence i+1.
package tree

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/mod/sumdb/tlog"
)

// ErrRange reports a proof asked for leaves or sizes the tree does not have.
var ErrRange = errors.New("out of range")

// HashStore holds a tree's stored hashes, indexed by tlog.StoredHashIndex.
//
// The tree is its only user. It appends the hashes each new leaf adds, in
// index order starting from an empty store, and reads only indexes it has
// appended. Reads may run concurrently with each other, never with an
// append. An error from either fails the tree operation that needed it.
type HashStore interface {
	tlog.HashReader
	AppendHashes(h []tlog.Hash) error
}

// Tree is an append-only Merkle tree. It is safe for concurrent use.
type Tree struct {
	mu    sync.RWMutex
	store HashStore
	n     int64 // number of leaves
}

// New returns an empty tree whose hashes are kept in memory.
func New() *Tree { return NewOn(&memory{}) }

// NewOn returns an empty tree whose hashes are kept in store, which must
// be empty.
func NewOn(store HashStore) *Tree { return &Tree{store: store} }

// memory is the in-memory HashStore.
type memory struct{ hashes []tlog.Hash }

func (m *memory) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x < 0 || x >= int64(len(m.hashes)) {
			return nil, fmt.Errorf("%w: hash index %d", ErrRange, x)
		}
		out[i] = m.hashes[x]
	}
	return out, nil
}

func (m *memory) AppendHashes(h []tlog.Hash) error {
	m.hashes = append(m.hashes, h...)
	return nil
}

// Append adds the record body as the next leaf and returns its leaf hash.
func (t *Tree) Append(body []byte) (tlog.Hash, error) {
	return t.AppendLeafHash(tlog.RecordHash(body))
}

// AppendLeafHash adds a leaf by its hash.
func (t *Tree) AppendLeafHash(h tlog.Hash) (tlog.Hash, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	add, err := tlog.StoredHashesForRecordHash(t.n, h, t.store)
	if err != nil {
		return tlog.Hash{}, err
	}
	if err := t.store.AppendHashes(add); err != nil {
		return tlog.Hash{}, err
	}
	t.n++
	return h, nil
}

// Size is the number of leaves.
func (t *Tree) Size() int64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.n
}

// Root is the root hash of the tree of the first n leaves.
func (t *Tree) Root(n int64) (tlog.Hash, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if n < 0 || n > t.n {
		return tlog.Hash{}, fmt.Errorf("%w: tree size %d, have %d", ErrRange, n, t.n)
	}
	return tlog.TreeHash(n, t.store)
}

// LeafHash returns the hash of leaf i.
func (t *Tree) LeafHash(i int64) (tlog.Hash, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if i < 0 || i >= t.n {
		return tlog.Hash{}, fmt.Errorf("%w: leaf %d, have %d", ErrRange, i, t.n)
	}
	h, err := t.store.ReadHashes([]int64{tlog.StoredHashIndex(0, i)})
	if err != nil {
		return tlog.Hash{}, err
	}
	return h[0], nil
}

// InclusionProof proves leaf i in the tree of size n.
func (t *Tree) InclusionProof(i, n int64) (tlog.RecordProof, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if n <= 0 || n > t.n || i < 0 || i >= n {
		return nil, fmt.Errorf("%w: leaf %d in tree size %d (have %d)", ErrRange, i, n, t.n)
	}
	return tlog.ProveRecord(n, i, t.store)
}

// ConsistencyProof proves that the tree of size m is a prefix of size n.
func (t *Tree) ConsistencyProof(m, n int64) (tlog.TreeProof, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if m <= 0 || m > n || n > t.n {
		return nil, fmt.Errorf("%w: from %d to %d (have %d)", ErrRange, m, n, t.n)
	}
	return tlog.ProveTree(n, m, t.store)
}

// LeafHashOf is the RFC 6962 leaf hash of a stored body.
func LeafHashOf(body []byte) tlog.Hash { return tlog.RecordHash(body) }
