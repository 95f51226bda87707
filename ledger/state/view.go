package state

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"custos.dev/ledger/event"
	"custos.dev/ledger/policy"
	"custos.dev/ledger/record"
)

// IDEntry is what the index keeps for a source+id: where it is, and a
// digest of the content MAC to tell a re-send from a conflict. It is kept
// small (24 bytes) because the index has one entry per event; the receipt
// of a re-send is rebuilt from the stored record.
type IDEntry struct {
	Seq uint64
	MAC [16]byte
}

// MACDigest is the index's digest of a record's content MAC.
func MACDigest(contentMAC string) [16]byte {
	h := sha256.Sum256([]byte(contentMAC))
	var d [16]byte
	copy(d[:], h[:16])
	return d
}

func idBytes(key string) [16]byte {
	var k [16]byte
	hex.Decode(k[:], []byte(key))
	return k
}

// RegisterEntry is one line of the transfer register: a cross-border
// transfer (or storage or sharing abroad) that was recorded, or an attempt
// that was blocked.
type RegisterEntry struct {
	Seq            uint64    `json:"seq"`
	Time           time.Time `json:"time"`
	Subject        string    `json:"subject"`
	Kind           string    `json:"kind"` // the attempted event type
	TransferID     string    `json:"transfer_id,omitempty"`
	Recipient      string    `json:"recipient,omitempty"`
	From           string    `json:"from_region,omitempty"`
	To             string    `json:"to_region"`
	Mechanism      string    `json:"mechanism,omitempty"`
	AssessmentRef  string    `json:"assessment_ref,omitempty"`
	Basis          string    `json:"basis,omitempty"`
	TransferGround string    `json:"transfer_ground,omitempty"`
	Categories     []string  `json:"categories"`
	Purpose        string    `json:"purpose,omitempty"`
	Allowed        bool      `json:"allowed"`
	Reasons        []string  `json:"reasons"`
	PolicyRevision string    `json:"policy_revision"`
}

// View is the live projection of the whole ledger. It is safe for
// concurrent use.
type View struct {
	mu       sync.RWMutex
	changed  *sync.Cond
	applied  uint64
	subjects map[string]*Subject
	// notices is replaced, never changed in place, so that readers take
	// no lock: every decision reads it.
	notices  atomic.Pointer[[]policy.NoticeVersion]
	ids      IDStore
	register RegisterStore
	domestic func(region string) bool
	// policyRev is the revision named by the last custos.policy.activated.
	policyRev string
}

// IDStore is the source+id index: for each key, where the first record
// stored under it is. Add keeps an entry a key already has, so a re-send
// is answered with the original record. Implementations are safe for
// concurrent use; an error means the index cannot say, never "absent".
type IDStore interface {
	Get(key [16]byte) (IDEntry, bool, error)
	Add(key [16]byte, e IDEntry) error
}

// RegisterStore holds the transfer register. The view adds entries in
// sequence order, one at a time; Entries may run concurrently with Add
// and sees every entry added before it started.
type RegisterStore interface {
	Add(e *RegisterEntry) error
	// Entries returns the entries keep accepts, in sequence order.
	Entries(keep func(*RegisterEntry) bool) ([]RegisterEntry, error)
}

// Stores moves out of memory what a view would otherwise keep for every
// event. A nil field keeps that part in memory; a store must start empty.
type Stores struct {
	IDs      IDStore
	Register RegisterStore
}

// NewView returns an empty view that keeps everything in memory. domestic
// tells which regions are inside the ledger's home jurisdiction, for the
// transfer register.
func NewView(domestic func(region string) bool) *View { return NewViewOn(domestic, Stores{}) }

// NewViewOn is NewView with parts of the view in stores.
func NewViewOn(domestic func(region string) bool, stores Stores) *View {
	if stores.IDs == nil {
		stores.IDs = newMemoryIDs()
	}
	if stores.Register == nil {
		stores.Register = &memoryRegister{}
	}
	v := &View{subjects: map[string]*Subject{}, domestic: domestic, ids: stores.IDs, register: stores.Register}
	v.notices.Store(&[]policy.NoticeVersion{})
	v.changed = sync.NewCond(v.mu.RLocker())
	return v
}

// IDKey is the index key of a source+id, also used as Nats-Msg-Id.
func IDKey(source, id string) string {
	h := sha256.Sum256([]byte(source + "\x00" + id))
	return hex.EncodeToString(h[:16])
}

// Apply folds the record at seq into the view; the follower calls it for
// every record in sequence order.
func (v *View) Apply(seq uint64, pseudonym string, r *record.Record) error {
	return v.apply(seq, pseudonym, r, false)
}

// ApplyLocal folds a record this process has just appended into its
// subject's state at once, so that the next decision about the subject sees
// it (read-your-writes) before the follower reaches it. The follower's later
// Apply of the same record changes nothing twice.
func (v *View) ApplyLocal(seq uint64, pseudonym string, r *record.Record) error {
	return v.apply(seq, pseudonym, r, true)
}

func (v *View) apply(seq uint64, pseudonym string, r *record.Record, local bool) error {
	// Everything that needs no state is computed before taking the lock:
	// every append takes it, and a holder that waits for a core makes
	// every other append wait too.
	dec, err := Decode(r)
	if err != nil {
		return err
	}
	// Denials are indexed too, under their own ids, so that a denied event
	// re-sent in the same state is answered with its first denial.
	key, ent := idBytes(IDKey(r.Source, r.ID)), IDEntry{Seq: seq, MAC: MACDigest(r.ContentMAC)}
	var reg *RegisterEntry
	if pseudonym != "" && !local {
		reg = v.registerEntry(seq, pseudonym, r)
	}

	v.mu.Lock()
	defer func() {
		v.mu.Unlock()
		v.changed.Broadcast()
	}()
	// The stores are written before anything in memory changes, so a
	// failed write leaves the view as it was. A record this process
	// appended was indexed by ApplyLocal; the follower's Apply of it need
	// not write the index again.
	inOrder := !local && seq > v.applied
	if s := v.subjects[pseudonym]; s == nil || s.LastSeq < seq {
		if err := v.ids.Add(key, ent); err != nil {
			return fmt.Errorf("id index: %w", err)
		}
	}
	if inOrder && reg != nil {
		if err := v.register.Add(reg); err != nil {
			return fmt.Errorf("transfer register: %w", err)
		}
	}
	if d, ok := dec.data.(*event.NoticePublished); ok && inOrder {
		notices := append(slices.Clone(*v.notices.Load()), policy.NoticeVersion{Version: d.Version, Effective: d.Effective})
		v.notices.Store(&notices)
	}
	if d, ok := dec.data.(*record.PolicyActivated); ok && inOrder {
		v.policyRev = d.Revision
	}
	if pseudonym != "" {
		s := v.subjects[pseudonym]
		if s == nil {
			s = NewSubject(pseudonym)
			v.subjects[pseudonym] = s
		}
		s.ApplyDecoded(seq, r, dec)
	}
	if inOrder {
		v.applied = seq
	}
	return nil
}

// MarkApplied records that every sequence up to seq has been seen, also
// those that changed nothing here.
func (v *View) MarkApplied(seq uint64) {
	v.mu.Lock()
	if seq > v.applied {
		v.applied = seq
	}
	v.mu.Unlock()
	v.changed.Broadcast()
}

// registerEntry is the register line of r, or nil when r is not a
// cross-border transfer (recorded or blocked). It reads nothing that
// changes, so it runs outside the lock.
func (v *View) registerEntry(seq uint64, pseudonym string, r *record.Record) *RegisterEntry {
	e := RegisterEntry{Seq: seq, Time: r.EventTime(), Subject: pseudonym, Allowed: true, Reasons: []string{}}
	data := r.Data
	typ := r.Type
	var dec *policy.Decision = r.Decision
	if r.Type == record.TypeDenied {
		var d record.Denied
		if err := r.DecodeData(&d); err != nil {
			return nil
		}
		data, typ, dec, e.Allowed = d.Attempted, d.Type, &d.Decision, false
		// A blocked attempt is registered at the time it claimed, like an
		// allowed one.
		if t, err := time.Parse(time.RFC3339Nano, d.Time); err == nil {
			e.Time = t
		}
	}
	e.Kind = typ
	if dec != nil {
		e.PolicyRevision, e.Basis, e.TransferGround = dec.PolicyRevision, dec.Basis, dec.TransferGround
		for _, rs := range dec.Reasons {
			e.Reasons = append(e.Reasons, rs.Code)
		}
	}
	switch typ {
	case "privacy.data.transferred":
		var d event.DataTransferred
		if json.Unmarshal(data, &d) != nil {
			return nil
		}
		e.TransferID, e.Recipient, e.From, e.To, e.Mechanism, e.Categories, e.Purpose = d.TransferID, d.Recipient, d.FromRegion, d.ToRegion, d.Mechanism, d.Categories, d.Purpose
		e.AssessmentRef = d.AssessmentRef
	case "privacy.data.shared":
		var d event.DataShared
		if json.Unmarshal(data, &d) != nil || v.domestic(d.Region) {
			return nil
		}
		e.Recipient, e.To, e.Categories, e.Purpose = d.Recipient, d.Region, d.Categories, d.Purpose
	case "privacy.data.collected":
		var d event.DataCollected
		if json.Unmarshal(data, &d) != nil || v.domestic(d.StorageRegion) {
			return nil
		}
		e.To, e.Categories, e.Purpose = d.StorageRegion, d.Categories, d.Purpose
	default:
		return nil
	}
	return &e
}

// Applied is the highest sequence applied.
func (v *View) Applied() uint64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.applied
}

// WaitApplied blocks until every sequence up to seq has been applied or ctx
// is done.
func (v *View) WaitApplied(ctx context.Context, seq uint64) error {
	stop := context.AfterFunc(ctx, func() {
		v.mu.RLock()
		v.changed.Broadcast()
		v.mu.RUnlock()
	})
	defer stop()
	v.mu.RLock()
	defer v.mu.RUnlock()
	for v.applied < seq {
		if err := ctx.Err(); err != nil {
			return err
		}
		v.changed.Wait()
	}
	return nil
}

// Lookup finds what was recorded for a source+id key. An error means the
// index could not be read.
func (v *View) Lookup(key string) (IDEntry, bool, error) {
	return v.ids.Get(idBytes(key))
}

// memoryIDs maps source+id keys to what was recorded, in shards with locks of
// their own: every append looks up its id twice and adds it once, and must
// not wait for the view's lock to do so.
type memoryIDs [64]struct {
	mu sync.RWMutex
	m  map[[16]byte]IDEntry
}

func newMemoryIDs() *memoryIDs {
	x := &memoryIDs{}
	for i := range x {
		x[i].m = map[[16]byte]IDEntry{}
	}
	return x
}

func (x *memoryIDs) shard(k [16]byte) int { return int(k[0]) % len(x) }

func (x *memoryIDs) Add(k [16]byte, e IDEntry) error {
	sh := &x[x.shard(k)]
	sh.mu.Lock()
	if _, seen := sh.m[k]; !seen {
		sh.m[k] = e
	}
	sh.mu.Unlock()
	return nil
}

func (x *memoryIDs) Get(k [16]byte) (IDEntry, bool, error) {
	sh := &x[x.shard(k)]
	sh.mu.RLock()
	e, ok := sh.m[k]
	sh.mu.RUnlock()
	return e, ok, nil
}

// PolicySubject is a subject's state for a decision at now.
func (v *View) PolicySubject(pseudonym string, now time.Time) policy.SubjectState {
	v.mu.RLock()
	defer v.mu.RUnlock()
	s := v.subjects[pseudonym]
	if s == nil {
		return NewSubject(pseudonym).PolicyState(now)
	}
	return s.PolicyState(now)
}

// Subject returns a copy of a subject's state, or nil.
func (v *View) Subject(pseudonym string) *Subject {
	v.mu.RLock()
	defer v.mu.RUnlock()
	s := v.subjects[pseudonym]
	if s == nil {
		return nil
	}
	return s.Clone()
}

// Notices is the notice history.
func (v *View) Notices() policy.Notices {
	n := policy.Notices{Versions: slices.Clone(*v.notices.Load())}
	if len(n.Versions) > 0 {
		n.Current = n.Versions[len(n.Versions)-1].Version
	}
	return n
}

// Register returns the transfer register entries matching keep, in
// sequence order.
func (v *View) Register(keep func(*RegisterEntry) bool) ([]RegisterEntry, error) {
	return v.register.Entries(keep)
}

// memoryRegister is the in-memory RegisterStore.
type memoryRegister struct {
	mu      sync.RWMutex
	entries []RegisterEntry
}

func (m *memoryRegister) Add(e *RegisterEntry) error {
	m.mu.Lock()
	m.entries = append(m.entries, *e)
	m.mu.Unlock()
	return nil
}

func (m *memoryRegister) Entries(keep func(*RegisterEntry) bool) ([]RegisterEntry, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := []RegisterEntry{}
	for i := range m.entries {
		if keep(&m.entries[i]) {
			out = append(out, m.entries[i])
		}
	}
	return out, nil
}

// EachSubject calls fn for a copy-free read of every subject under the read
// lock; fn must not call back into the view.
func (v *View) EachSubject(fn func(*Subject)) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	for _, s := range v.subjects {
		fn(s)
	}
}

// Subjects is the number of subjects known.
func (v *View) Subjects() int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return len(v.subjects)
}

// PolicyRevision is the revision of the last recorded policy activation.
func (v *View) PolicyRevision() string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.policyRev
}

// LastSeq is the sequence of the subject's last record known to the view,
// 0 for none.
func (v *View) LastSeq(pseudonym string) uint64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if s := v.subjects[pseudonym]; s != nil {
		return s.LastSeq
	}
	return 0
}
