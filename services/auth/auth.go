// Package auth issues and checks Custos API tokens (docs/openapi.yaml).
//
// A token is "cst_<id>_<secret>": the id finds the record, the secret is
// 256 random bits. Only SHA-256 of the whole token is stored, in the
// JetStream KV bucket custos_tokens shared by every Custos process; a watch
// keeps each process's cache current, so a revocation takes effect
// everywhere. Comparison is constant-time.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Roles.
const (
	RoleEmitter = "emitter"
	RoleAuditor = "auditor"
	RoleAdmin   = "admin"
	// RolePolicy is a security team's: it may re-decide history under a
	// candidate set and activate the server's policy set.
	RolePolicy = "policy"
)

// Bucket is the KV bucket of token records.
const Bucket = "custos_tokens"

// Errors of token checks.
var (
	ErrNoToken      = errors.New("no token")
	ErrBadToken     = errors.New("invalid or revoked token")
	ErrInvalidRole  = errors.New("role must be emitter, auditor, policy or admin")
	ErrSourceNeeded = errors.New("an emitter token needs a source")
	// ErrRevoked is Import's answer for a token revoked or deleted before.
	ErrRevoked = errors.New("token was revoked or deleted; it is not restored")
)

// Token is a stored token record; the secret itself is never stored.
type Token struct {
	ID        string     `json:"id"`
	Role      string     `json:"role"`
	Source    string     `json:"source,omitempty"`
	Hash      string     `json:"hash,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	Note      string     `json:"note,omitempty"`
}

// Allows reports whether the token's role grants role. Admin grants all.
func (t *Token) Allows(role string) bool { return t.Role == role || t.Role == RoleAdmin }

// Store holds tokens.
type Store struct {
	kv  jetstream.KeyValue
	now func() time.Time

	mu     sync.RWMutex
	tokens map[string]*Token
	stop   func()
}

// Open starts watching the token bucket kv (the ledger's Bucket(Bucket),
// so it has the ledger's replicas and placement).
func Open(ctx context.Context, kv jetstream.KeyValue, now func() time.Time) (*Store, error) {
	s := &Store{kv: kv, now: now, tokens: map[string]*Token{}}
	wctx, cancel := context.WithCancel(context.Background())
	w, err := kv.WatchAll(wctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("token watch: %w", err)
	}
	ready := make(chan struct{})
	go func() {
		once := sync.Once{}
		for e := range w.Updates() {
			if e == nil { // end of the initial values
				once.Do(func() { close(ready) })
				continue
			}
			s.apply(e)
		}
	}()
	select {
	case <-ready:
	case <-ctx.Done():
		cancel()
		return nil, ctx.Err()
	}
	s.stop = func() { _ = w.Stop(); cancel() }
	return s, nil
}

func (s *Store) apply(e jetstream.KeyValueEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(s.tokens, e.Key())
		return
	}
	var t Token
	if json.Unmarshal(e.Value(), &t) == nil {
		s.tokens[e.Key()] = &t
	}
}

// Close stops the watch.
func (s *Store) Close() { s.stop() }

// Create issues a token and returns its record and the secret token string,
// which is shown once.
func (s *Store) Create(ctx context.Context, role, source, note string) (*Token, string, error) {
	switch role {
	case RoleEmitter:
		if source == "" {
			return nil, "", ErrSourceNeeded
		}
	case RoleAuditor, RolePolicy, RoleAdmin:
	default:
		return nil, "", ErrInvalidRole
	}
	secret, err := NewSecret()
	if err != nil {
		return nil, "", err
	}
	id, _ := tokenID(secret)
	t := &Token{ID: id, Role: role, Source: source, Hash: hashToken(secret), CreatedAt: s.now().UTC(), Note: note}
	if err := s.put(ctx, t, true); err != nil {
		return nil, "", err
	}
	return t, secret, nil
}

// Import stores an existing secret (the admin token written on first
// start) so that a restart with the same data keeps it valid. A token the
// store has ever held is never stored again: if it was revoked or deleted,
// Import fails with ErrRevoked, so a restart cannot revive it.
func (s *Store) Import(ctx context.Context, secret, role string) (*Token, error) {
	id, ok := tokenID(secret)
	if !ok {
		return nil, ErrBadToken
	}
	if t, err := s.Check(secret); err == nil {
		return t, nil
	}
	// The key's history, delete and purge markers included: a Get answers
	// "not found" for a deleted token as for one that never was.
	switch _, err := s.kv.History(ctx, id); {
	case err == nil:
		return nil, ErrRevoked
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, fmt.Errorf("look up token: %w", err)
	}
	t := &Token{ID: id, Role: role, Hash: hashToken(secret), CreatedAt: s.now().UTC(), Note: "bootstrap admin"}
	if err := s.put(ctx, t, true); errors.Is(err, jetstream.ErrKeyExists) {
		return nil, ErrRevoked
	} else if err != nil {
		return nil, err
	}
	return t, nil
}

func (s *Store) put(ctx context.Context, t *Token, create bool) error {
	b, _ := json.Marshal(t)
	var err error
	if create {
		_, err = s.kv.Create(ctx, t.ID, b)
	} else {
		_, err = s.kv.Put(ctx, t.ID, b)
	}
	if err != nil {
		return fmt.Errorf("store token: %w", err)
	}
	s.mu.Lock()
	s.tokens[t.ID] = t
	s.mu.Unlock()
	return nil
}

// Check returns the token record of a presented secret.
func (s *Store) Check(secret string) (*Token, error) {
	if secret == "" {
		return nil, ErrNoToken
	}
	id, ok := tokenID(secret)
	if !ok {
		return nil, ErrBadToken
	}
	s.mu.RLock()
	t := s.tokens[id]
	s.mu.RUnlock()
	want := hashToken(secret)
	stored := ""
	if t != nil {
		stored = t.Hash
	}
	// Compare even when the id is unknown, so timing says nothing.
	if subtle.ConstantTimeCompare([]byte(want), []byte(stored)) != 1 || t == nil || t.RevokedAt != nil {
		return nil, ErrBadToken
	}
	return t, nil
}

// List returns every token record without hashes, newest first.
func (s *Store) List() []Token {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Token, 0, len(s.tokens))
	for _, t := range s.tokens {
		c := *t
		c.Hash = ""
		out = append(out, c)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].CreatedAt.After(out[j-1].CreatedAt); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// Revoke marks a token revoked. Revoking twice is not an error.
func (s *Store) Revoke(ctx context.Context, id string) (*Token, error) {
	s.mu.RLock()
	t := s.tokens[id]
	s.mu.RUnlock()
	if t == nil {
		return nil, ErrBadToken
	}
	c := *t
	if c.RevokedAt == nil {
		at := s.now().UTC()
		c.RevokedAt = &at
	}
	if err := s.put(ctx, &c, false); err != nil {
		return nil, err
	}
	c.Hash = ""
	return &c, nil
}

func tokenID(secret string) (string, bool) {
	rest, ok := strings.CutPrefix(secret, "cst_")
	if !ok {
		return "", false
	}
	id, _, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 16 {
		return "", false
	}
	if _, err := hex.DecodeString(id); err != nil {
		return "", false
	}
	return id, true
}

func hashToken(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// NewSecret makes a fresh token string without storing it (for the
// bootstrap admin token, stored with Import).
func NewSecret() (string, error) {
	idb := make([]byte, 8)
	sec := make([]byte, 32)
	if _, err := rand.Read(idb); err != nil {
		return "", err
	}
	if _, err := rand.Read(sec); err != nil {
		return "", err
	}
	return "cst_" + hex.EncodeToString(idb) + "_" + base64.RawURLEncoding.EncodeToString(sec), nil
}
