// Package index keeps what the ledger needs for every event, the Merkle
// tree's stored hashes, the source+id index, the transfer register and a
// copy of each data subject's records, in Pebble databases on local disk,
// so that a Custos process's memory grows with the number of data subjects
// and not with the number of events, and one subject's history is read
// from a few adjacent blocks however large the ledger is.
//
// The databases are a cache of the stream, never a source of truth: Open
// empties them and the ledger's follower refills them while it replays
// LEDGER. A crash, a lost directory or a stream restored from a backup
// therefore leave nothing stale behind, and they need neither a
// write-ahead log nor a single fsync.
package index

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/mod/sumdb/tlog"

	"custos.dev/ledger/state"
	"custos.dev/ledger/tree"
)

// ErrInUse is returned by Open when another process holds the directory.
var ErrInUse = errors.New("index directory in use")

// Key prefixes of the four indexes.
const (
	prefixHash     = 'h' // + stored hash index, big-endian uint64 -> 32-byte hash
	prefixID       = 'i' // + 16-byte source+id key -> big-endian seq, 16-byte MAC digest
	prefixRegister = 'r' // + big-endian seq -> JSON register entry
	prefixSubject  = 's' // + pseudonym, 0x00, big-endian seq -> stored record body
)

// ErrClosed is returned by the indexes of a closed DB.
var ErrClosed = errors.New("index closed")

// DB is an open index database: two Pebble databases under one lock, the
// source+id index alone in one, so that the lookup every append makes
// searches a memtable of small keys rather than one full of records
// (measured: half the time for a miss).
type DB struct {
	// mu makes Close wait for reads and writes in progress: pebble panics
	// on a closed database, and a late reader must get an error instead.
	mu     sync.RWMutex
	closed bool
	dbs    [2]*pebble.DB // mainDB, idsDB
	lock   *pebble.Lock
}

const (
	mainDB = iota // tree hashes, transfer register, subjects' records
	idsDB         // source+id index
)

// use runs f on one of the open databases, or fails with ErrClosed.
func (d *DB) use(which int, f func(db *pebble.DB) error) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return ErrClosed
	}
	return f(d.dbs[which])
}

// Open locks dir (creating it), empties it and opens an index database in
// it. The caller must Close it.
func Open(dir string, log *slog.Logger) (*DB, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	lock, err := pebble.LockDirectory(dir, vfs.Default)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInUse, dir, err)
	}
	// Emptied under the lock, so a second process never removes the
	// files of one that is running.
	if err := empty(dir); err != nil {
		lock.Close()
		return nil, err
	}
	d := &DB{lock: lock}
	cache := pebble.NewCache(32 << 20)
	defer cache.Unref()
	for which, c := range []struct {
		name     string
		memtable uint64
	}{mainDB: {"main", 16 << 20}, idsDB: {"ids", 4 << 20}} {
		opts := &pebble.Options{
			DisableWAL:         true,
			FormatMajorVersion: pebble.FormatNewest,
			MemTableSize:       c.memtable,
			Cache:              cache,
			Logger:             logger{log},
			Merger:             keepFirst,
		}
		// Every append looks up an id that is almost always absent; bloom
		// filters answer that without reading each level's blocks (the
		// setting is inherited by every level below L0).
		opts.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
		if d.dbs[which], err = pebble.Open(filepath.Join(dir, c.name), opts); err != nil {
			d.closeAll()
			return nil, fmt.Errorf("index %s: %w", dir, err)
		}
	}
	return d, nil
}

// closeAll closes the databases that are open and releases the lock.
func (d *DB) closeAll() error {
	var errs []error
	for _, db := range d.dbs {
		if db != nil {
			errs = append(errs, db.Close())
		}
	}
	return errors.Join(append(errs, d.lock.Close())...)
}

// empty removes everything in dir but pebble's lock file.
func empty(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == "LOCK" {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the database and releases the directory.
func (d *DB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	return d.closeAll()
}

// TreeHashes is the tree's hash store. A DB has one: the tree that uses it
// must be the only one.
func (d *DB) TreeHashes() tree.HashStore { return &hashes{db: d} }

// IDs is the source+id index.
func (d *DB) IDs() state.IDStore { return &ids{db: d} }

// Register is the transfer register.
func (d *DB) Register() state.RegisterStore { return &register{db: d} }

type register struct{ db *DB }

func (r *register) Add(e *state.RegisterEntry) error {
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	key := binary.BigEndian.AppendUint64([]byte{prefixRegister}, e.Seq)
	err = r.db.use(mainDB, func(db *pebble.DB) error { return db.Set(key, v, pebble.NoSync) })
	if err != nil {
		return fmt.Errorf("write register entry: %w", err)
	}
	return nil
}

func (r *register) Entries(keep func(*state.RegisterEntry) bool) ([]state.RegisterEntry, error) {
	out := []state.RegisterEntry{}
	err := r.db.use(mainDB, func(db *pebble.DB) error {
		return scan(db, []byte{prefixRegister}, func(_, v []byte) error {
			var e state.RegisterEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			if keep(&e) {
				out = append(out, e)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read register: %w", err)
	}
	return out, nil
}

// scan calls fn for every key with prefix, in key order. fn must not keep
// the slices it is given.
func scan(db *pebble.DB, prefix []byte, fn func(k, v []byte) error) error {
	upper := slices.Clone(prefix)
	upper[len(upper)-1]++ // every prefix here ends below 0xff
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: upper})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			it.Close()
			return err
		}
	}
	return errors.Join(it.Error(), it.Close())
}

// SubjectRecords is the copy of each data subject's records.
func (d *DB) SubjectRecords() *SubjectRecords { return &SubjectRecords{db: d} }

// SubjectRecords holds each data subject's records, as stored in the
// stream, in sequence order. The stream store would load a whole block
// (megabytes) for each record of a subject whose history spans the ledger.
type SubjectRecords struct{ db *DB }

func subjectPrefix(pseudonym string) []byte {
	return append(append([]byte{prefixSubject}, pseudonym...), 0)
}

// Add records the body stored at seq for the subject. A pseudonym must
// not contain a NUL byte.
func (r *SubjectRecords) Add(pseudonym string, seq uint64, body []byte) error {
	key := binary.BigEndian.AppendUint64(subjectPrefix(pseudonym), seq)
	err := r.db.use(mainDB, func(db *pebble.DB) error { return db.Set(key, body, pebble.NoSync) })
	if err != nil {
		return fmt.Errorf("write subject record: %w", err)
	}
	return nil
}

// Record is one record of a subject.
type Record struct {
	Seq  uint64
	Body []byte
}

// Records returns the subject's records added so far, in sequence order.
func (r *SubjectRecords) Records(pseudonym string) ([]Record, error) {
	prefix := subjectPrefix(pseudonym)
	var out []Record
	err := r.db.use(mainDB, func(db *pebble.DB) error {
		return scan(db, prefix, func(k, v []byte) error {
			if len(k) != len(prefix)+8 {
				return fmt.Errorf("malformed subject record key of %d bytes", len(k))
			}
			out = append(out, Record{Seq: binary.BigEndian.Uint64(k[len(prefix):]), Body: slices.Clone(v)})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read subject records: %w", err)
	}
	return out, nil
}

type hashes struct {
	db *DB
	n  int64 // hashes appended; the tree serializes appends
	// edge is the last hash stored at each level of the tree: the only
	// ones an append reads (the roots of the complete subtrees to the
	// left of the new leaf), so appending never waits on a lookup.
	edge [64]struct {
		idx int64
		h   tlog.Hash
	}
}

func hashKey(i int64) []byte {
	var k [9]byte
	k[0] = prefixHash
	binary.BigEndian.PutUint64(k[1:], uint64(i))
	return k[:]
}

func (h *hashes) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	err := h.db.use(mainDB, func(db *pebble.DB) error {
		for i, x := range idx {
			if level, _ := tlog.SplitStoredHashIndex(x); x < h.n && h.edge[level].idx == x {
				out[i] = h.edge[level].h
				continue
			}
			v, closer, err := db.Get(hashKey(x))
			if errors.Is(err, pebble.ErrNotFound) {
				return fmt.Errorf("%w: hash index %d", tree.ErrRange, x)
			}
			if err != nil {
				return fmt.Errorf("read stored hash %d: %w", x, err)
			}
			ok := len(v) == len(out[i])
			copy(out[i][:], v)
			closer.Close()
			if !ok {
				return fmt.Errorf("stored hash %d has %d bytes", x, len(v))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (h *hashes) AppendHashes(add []tlog.Hash) error {
	err := h.db.use(mainDB, func(db *pebble.DB) error {
		b := db.NewBatch()
		defer b.Close()
		for i := range add {
			if err := b.Set(hashKey(h.n+int64(i)), add[i][:], nil); err != nil {
				return err
			}
		}
		return b.Commit(pebble.NoSync)
	})
	if err != nil {
		return fmt.Errorf("store tree hashes: %w", err)
	}
	for i := range add {
		x := h.n + int64(i)
		level, _ := tlog.SplitStoredHashIndex(x)
		h.edge[level].idx, h.edge[level].h = x, add[i]
	}
	h.n += int64(len(add))
	return nil
}

type ids struct{ db *DB }

func idKey(k [16]byte) []byte {
	var b [17]byte
	b[0] = prefixID
	copy(b[1:], k[:])
	return b[:]
}

func (x *ids) Get(k [16]byte) (e state.IDEntry, found bool, err error) {
	err = x.db.use(idsDB, func(db *pebble.DB) error {
		v, closer, err := db.Get(idKey(k))
		if errors.Is(err, pebble.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		defer closer.Close()
		if len(v) != 24 {
			return fmt.Errorf("entry has %d bytes", len(v))
		}
		e.Seq, found = binary.BigEndian.Uint64(v), true
		copy(e.MAC[:], v[8:])
		return nil
	})
	if err != nil {
		return state.IDEntry{}, false, fmt.Errorf("read id index: %w", err)
	}
	return e, found, nil
}

// Add writes blindly, as a merge operand that keepFirst resolves: reading
// first to see whether the key is taken cost a lookup in every level for
// every event (a quarter of a replay's CPU).
func (x *ids) Add(k [16]byte, e state.IDEntry) error {
	var v [24]byte
	binary.BigEndian.PutUint64(v[:], e.Seq)
	copy(v[8:], e.MAC[:])
	err := x.db.use(idsDB, func(db *pebble.DB) error { return db.Merge(idKey(k), v[:], pebble.NoSync) })
	if err != nil {
		return fmt.Errorf("write id index: %w", err)
	}
	return nil
}

// keepFirst is the database's merge operator: of all the values merged
// into a key, the oldest wins, which is how the id index answers a re-send
// with the original record. Only the id index merges.
var keepFirst = &pebble.Merger{
	Name: "custos.keep_first",
	Merge: func(_, value []byte) (pebble.ValueMerger, error) {
		return &firstValue{v: slices.Clone(value)}, nil
	},
}

type firstValue struct{ v []byte }

func (f *firstValue) MergeNewer([]byte) error { return nil }

func (f *firstValue) MergeOlder(value []byte) error {
	f.v = append(f.v[:0], value...)
	return nil
}

func (f *firstValue) Finish(bool) ([]byte, io.Closer, error) { return f.v, nil, nil }

// logger sends pebble's messages to slog: its routine ones at debug level,
// so a serving process does not narrate flushes and compactions.
type logger struct{ log *slog.Logger }

func (l logger) Infof(format string, args ...any) {
	l.log.Debug("index: " + fmt.Sprintf(format, args...))
}

func (l logger) Errorf(format string, args ...any) {
	l.log.Error("index: " + fmt.Sprintf(format, args...))
}

// Fatalf is called for a state pebble cannot continue from; it must not
// return.
func (l logger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error("index: " + msg)
	panic("index: " + msg)
}
