package pii

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"custos.dev/ledger/keys"
)

// Sentinel errors of the keyring.
var (
	// ErrErased reports a subject whose key was destroyed.
	ErrErased = errors.New("subject erased: key destroyed")
	// ErrNoKey reports a subject that has no key yet (and none was asked for).
	ErrNoKey = errors.New("subject has no key")
)

// Bucket names in JetStream KV.
const (
	KeysBucket = "custos_subject_keys"
	PIIBucket  = "custos_pii"
	MetaBucket = "custos_meta"
)

// SubjectKeyName is the Vault transit key wrapping one subject's data key.
// It names the subject only by pseudonym.
func SubjectKeyName(pseudonym string) string { return "custos-subject-" + pseudonym }

// SubjectKey is a subject's unwrapped data key and what derives from it.
type SubjectKey struct {
	aead          cipher.AEAD
	commitKey     []byte
	fetched       time.Time
	subjectSealed atomic.Bool
}

// SubjectSealed reports whether this process already stored the sealed
// subject identifier under this key.
func (k *SubjectKey) SubjectSealed() bool { return k.subjectSealed.Load() }

// MarkSubjectSealed records that the sealed identifier is stored.
func (k *SubjectKey) MarkSubjectSealed() { k.subjectSealed.Store(true) }

func newSubjectKey(dek []byte, now time.Time) (*SubjectKey, error) {
	sealKey, err := hkdf.Key(sha256.New, dek, nil, "custos/seal/v1", 32)
	if err != nil {
		return nil, err
	}
	commitKey, err := hkdf.Key(sha256.New, dek, nil, "custos/commitment/v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(sealKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &SubjectKey{aead: aead, commitKey: commitKey, fetched: now}, nil
}

// Commit is the keyed commitment to a personal value at path.
func (k *SubjectKey) Commit(path string, value []byte) string {
	m := hmac.New(sha256.New, k.commitKey)
	m.Write([]byte(path))
	m.Write([]byte{0})
	m.Write(value)
	return "hmac-sha256:" + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Seal encrypts v, bound to ref.
func (k *SubjectKey) Seal(ref string, v Values) ([]byte, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return k.aead.Seal(nonce, nonce, plain, []byte(ref)), nil
}

// Open decrypts what Seal sealed for ref.
func (k *SubjectKey) Open(ref string, sealed []byte) (Values, error) {
	n := k.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("pii: sealed value too short")
	}
	plain, err := k.aead.Open(nil, sealed[:n], sealed[n:], []byte(ref))
	if err != nil {
		return nil, errors.New("pii: sealed value does not open")
	}
	var v Values
	if err := json.Unmarshal(plain, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// keyEntry is a subject's entry in the keys bucket: its data key wrapped by
// its own transit key, or a tombstone once destroyed.
type keyEntry struct {
	Wrapped   string    `json:"wrapped,omitempty"`
	Created   time.Time `json:"created,omitempty"`
	Destroyed time.Time `json:"destroyed,omitzero"`
}

// Keyring hands out subjects' data keys, caching them so that Vault is
// called once per new subject and once per cache period per subject, not
// once per event.
type Keyring struct {
	stream jetstream.Stream
	vault  *keys.Client
	kv     jetstream.KeyValue
	ttl    time.Duration
	now    func() time.Time

	mu    sync.Mutex
	cache map[string]*SubjectKey
	// creating serializes creation per subject inside this process; across
	// processes the KV Create decides.
	creating map[string]*sync.Mutex
}

// NewKeyring uses the Vault transit engine through c and keeps wrapped keys
// in kv. Cached keys are trusted for ttl after Vault last confirmed them;
// that is how long appends survive a Vault outage.
// stream is kv's backing stream, through which Destroy overwrites a wrapped
// key on disk.
func NewKeyring(c *keys.Client, kv jetstream.KeyValue, stream jetstream.Stream, ttl time.Duration, now func() time.Time) *Keyring {
	return &Keyring{vault: c, kv: kv, stream: stream, ttl: ttl, now: now, cache: map[string]*SubjectKey{}, creating: map[string]*sync.Mutex{}}
}

// Get returns the subject's key, creating it when create is set and the
// subject has none. It fails with ErrErased for a destroyed key, ErrNoKey
// when there is none and create is false, and keys.ErrUnavailable when Vault
// cannot be reached and the cache cannot answer.
func (r *Keyring) Get(ctx context.Context, pseudonym string, create bool) (*SubjectKey, error) {
	r.mu.Lock()
	k, ok := r.cache[pseudonym]
	if ok && r.now().Sub(k.fetched) < r.ttl {
		r.mu.Unlock()
		return k, nil
	}
	lock := r.creating[pseudonym]
	if lock == nil {
		lock = &sync.Mutex{}
		r.creating[pseudonym] = lock
	}
	r.mu.Unlock()
	lock.Lock()
	defer lock.Unlock()
	r.mu.Lock()
	k, ok = r.cache[pseudonym]
	r.mu.Unlock()
	if ok && r.now().Sub(k.fetched) < r.ttl {
		return k, nil
	}
	k, err := r.load(ctx, pseudonym, create)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.cache[pseudonym] = k
	r.mu.Unlock()
	return k, nil
}

func (r *Keyring) load(ctx context.Context, pseudonym string, create bool) (*SubjectKey, error) {
	name := SubjectKeyName(pseudonym)
	for attempt := 0; attempt < 3; attempt++ {
		e, err := r.kv.Get(ctx, pseudonym)
		switch {
		case err == nil:
			var ent keyEntry
			if err := json.Unmarshal(e.Value(), &ent); err != nil {
				return nil, fmt.Errorf("pii: key entry: %w", err)
			}
			if !ent.Destroyed.IsZero() || ent.Wrapped == "" {
				return nil, ErrErased
			}
			dek, err := r.vault.Unwrap(ctx, name, ent.Wrapped)
			if errors.Is(err, keys.ErrNotFound) {
				return nil, ErrErased
			}
			if err != nil {
				return nil, err
			}
			return newSubjectKey(dek, r.now())
		case errors.Is(err, jetstream.ErrKeyNotFound):
			if !create {
				return nil, ErrNoKey
			}
			if err := r.vault.EnsureKey(ctx, name, "aes256-gcm96"); err != nil {
				return nil, err
			}
			dek, wrapped, err := r.vault.DataKey(ctx, name)
			if err != nil {
				return nil, err
			}
			b, _ := json.Marshal(keyEntry{Wrapped: wrapped, Created: r.now().UTC()})
			if _, err := r.kv.Create(ctx, pseudonym, b); err != nil {
				if errors.Is(err, jetstream.ErrKeyExists) {
					continue // another process won the race: use its key
				}
				return nil, fmt.Errorf("pii: store key: %w", err)
			}
			return newSubjectKey(dek, r.now())
		default:
			return nil, fmt.Errorf("pii: key entry: %w", err)
		}
	}
	return nil, fmt.Errorf("pii: key entry for subject kept changing")
}

// Destroy crypto-shreds a subject: the Vault transit key is deleted, the
// wrapped data key is overwritten where NATS stored it (a KV delete or
// replacement only marks it deleted, leaving its bytes in the block file)
// and replaced by a tombstone, and the cache forgets it. It is idempotent.
func (r *Keyring) Destroy(ctx context.Context, pseudonym string) error {
	if err := r.vault.DestroyKey(ctx, SubjectKeyName(pseudonym)); err != nil {
		return err
	}
	if err := r.shredEntry(ctx, pseudonym); err != nil {
		return err
	}
	b, _ := json.Marshal(keyEntry{Destroyed: r.now().UTC()})
	if _, err := r.kv.Put(ctx, pseudonym, b); err != nil {
		return fmt.Errorf("pii: tombstone: %w", err)
	}
	r.Forget(pseudonym)
	return nil
}

// shredEntry overwrites the stored wrapped key of a subject, unless what is
// stored is already a tombstone.
func (r *Keyring) shredEntry(ctx context.Context, pseudonym string) error {
	e, err := r.kv.Get(ctx, pseudonym)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pii: key entry: %w", err)
	}
	var ent keyEntry
	if json.Unmarshal(e.Value(), &ent) == nil && ent.Wrapped == "" {
		return nil
	}
	return secureDelete(ctx, r.stream, e.Revision())
}

// secureDelete overwrites one stored message with random data
// (JetStream's secure erase); a message already gone is no error.
func secureDelete(ctx context.Context, s jetstream.Stream, seq uint64) error {
	err := s.SecureDeleteMsg(ctx, seq)
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("pii: erase message %d: %w", seq, err)
	}
	return nil
}

// Forget drops a subject's key from the cache.
func (r *Keyring) Forget(pseudonym string) {
	r.mu.Lock()
	delete(r.cache, pseudonym)
	r.mu.Unlock()
}

// ErrLogicalErasure is returned, with a usable bucket, by OpenBucket for a
// bucket created denying deletes: erasure on it cannot overwrite.
var ErrLogicalErasure = errors.New("pii: bucket denies deletes")

// OpenBucket opens (creating it if needed) a KV bucket of personal values or
// keys whose stream allows message deletes, and returns it with that stream.
// JetStream creates KV streams with deletes denied, for good, and its secure
// erase, which overwrites a message in the block file, is a delete; so the
// stream is created here with the settings of a KV bucket (one value per
// key) but deletes allowed (docs/keys.md, "What erasure leaves"). For a
// bucket an older Custos created, it returns the bucket with
// ErrLogicalErasure.
func OpenBucket(ctx context.Context, js jetstream.JetStream, name string, replicas int, placement *jetstream.Placement) (jetstream.KeyValue, jetstream.Stream, error) {
	stream := "KV_" + name
	s, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name: stream, Subjects: []string{"$KV." + name + ".>"},
			MaxMsgsPerSubject: 1, MaxBytes: -1, MaxMsgs: -1, MaxMsgSize: -1, MaxConsumers: -1,
			Storage: jetstream.FileStorage, Replicas: max(1, replicas), Placement: placement,
			AllowRollup: true, AllowDirect: true, Discard: jetstream.DiscardNew, Duplicates: 2 * time.Minute,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = js.Stream(ctx, stream)
		}
	}
	if err != nil {
		return nil, nil, err
	}
	kv, err := js.KeyValue(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	if s.CachedInfo().Config.DenyDelete {
		return kv, s, ErrLogicalErasure
	}
	return kv, s, nil
}

// Store keeps sealed personal values, deletable per subject.
type Store struct {
	kv     jetstream.KeyValue
	stream jetstream.Stream
}

// NewStore uses the KV bucket kv, whose backing stream is stream.
func NewStore(kv jetstream.KeyValue, stream jetstream.Stream) *Store {
	return &Store{kv: kv, stream: stream}
}

// Ref is the store key of one event's sealed values.
func Ref(pseudonym, eventKey string) string { return pseudonym + "." + eventKey }

// Put stores sealed values.
func (s *Store) Put(ctx context.Context, ref string, sealed []byte) error {
	_, err := s.kv.Put(ctx, ref, sealed)
	return err
}

// Get returns sealed values, or jetstream.ErrKeyNotFound once purged.
func (s *Store) Get(ctx context.Context, ref string) ([]byte, error) {
	e, err := s.kv.Get(ctx, ref)
	if err != nil {
		return nil, err
	}
	return e.Value(), nil
}

// PurgeSubject removes every sealed value of a subject from the store,
// markers included, overwriting each on disk first: a purge alone only
// marks messages deleted, and their bytes stay in the block files.
func (s *Store) PurgeSubject(ctx context.Context, pseudonym string) error {
	keys, err := s.kv.ListKeysFiltered(ctx, pseudonym+".>")
	if err != nil {
		return err
	}
	// Draining the lister stops its watcher; stopping it again would fail.
	var refs []string
	for k := range keys.Keys() {
		refs = append(refs, k)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, ref := range refs {
		if err := s.erase(ctx, ref); err != nil {
			return err
		}
	}
	return s.stream.Purge(ctx, jetstream.WithPurgeSubject("$KV."+PIIBucket+"."+pseudonym+".>"))
}

// Delete removes one event's sealed values, overwriting them on disk.
func (s *Store) Delete(ctx context.Context, ref string) error {
	if err := s.erase(ctx, ref); err != nil {
		return err
	}
	return s.kv.Purge(ctx, ref)
}

func (s *Store) erase(ctx context.Context, ref string) error {
	e, err := s.kv.Get(ctx, ref)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil
	}
	if err != nil {
		return err
	}
	return secureDelete(ctx, s.stream, e.Revision())
}
