// Package checkpoint signs and opens the ledger's checkpoints: C2SP
// tlog-checkpoint signed notes (https://c2sp.org/tlog-checkpoint) whose
// signature is an Ed25519 note signature (golang.org/x/mod/sumdb/note) made
// by a Vault transit key, so that anyone holding the verifier key can check
// them with standard tools and no Custos code.
package checkpoint

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"custos.dev/ledger/keys"
)

// DefaultKeyName is the transit key that signs checkpoints.
const DefaultKeyName = "custos-checkpoint"

// ErrInvalid reports a checkpoint that does not parse or verify.
var ErrInvalid = errors.New("invalid checkpoint")

// Checkpoint is an opened, verified checkpoint.
type Checkpoint struct {
	Origin string
	Size   int64
	Root   tlog.Hash
	// Note is the signed note exactly as stored.
	Note []byte
}

// Signer is a note.Signer whose private key never leaves Vault.
type Signer struct {
	keys    *keys.Client
	keyName string
	origin  string
	pub     ed25519.PublicKey
	vkey    string
	hash    uint32
	timeout time.Duration
}

// NewSigner makes sure the ed25519 transit key exists and reads its public
// half. The note key name is the log origin.
func NewSigner(ctx context.Context, c *keys.Client, keyName, origin string) (*Signer, error) {
	if err := c.EnsureKey(ctx, keyName, "ed25519"); err != nil {
		return nil, fmt.Errorf("checkpoint key: %w", err)
	}
	pub, err := c.PublicKey(ctx, keyName)
	if err != nil {
		return nil, fmt.Errorf("checkpoint key: %w", err)
	}
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		return nil, fmt.Errorf("checkpoint origin %q: %w", origin, err)
	}
	// The verifier key is "name+hash+key"; its hash is the note key hash.
	parts := strings.SplitN(vkey, "+", 3)
	h, err := strconv.ParseUint(parts[1], 16, 32)
	if err != nil {
		return nil, fmt.Errorf("checkpoint verifier key: %w", err)
	}
	return &Signer{keys: c, keyName: keyName, origin: origin, pub: pub, vkey: vkey, hash: uint32(h), timeout: 10 * time.Second}, nil
}

// Name implements note.Signer.
func (s *Signer) Name() string { return s.origin }

// KeyHash implements note.Signer.
func (s *Signer) KeyHash() uint32 { return s.hash }

// Sign implements note.Signer by asking Vault to sign msg.
func (s *Signer) Sign(msg []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	sig, err := s.keys.Sign(ctx, s.keyName, msg)
	if err != nil {
		return nil, err
	}
	// Never publish a signature the verifier key would reject: a rotated
	// or replaced transit key must stop signing, not fork the log's key.
	if !ed25519.Verify(s.pub, msg, sig) {
		return nil, fmt.Errorf("checkpoint: vault signature does not match the verifier key")
	}
	return sig, nil
}

// VerifierKey is the note verifier key (SPEC §4, GET /v1/checkpoint/key).
func (s *Signer) VerifierKey() string { return s.vkey }

// Origin is the log's origin line.
func (s *Signer) Origin() string { return s.origin }

// Sign makes a signed checkpoint note for a tree of the given size and root.
func Sign(origin string, size int64, root tlog.Hash, signer note.Signer) ([]byte, error) {
	text := log.Checkpoint{Origin: origin, Size: uint64(size), Hash: root[:]}.Marshal()
	return note.Sign(&note.Note{Text: string(text)}, signer)
}

// Open verifies a signed checkpoint note with the verifier key vkey and
// returns its contents.
func Open(msg []byte, vkey string) (*Checkpoint, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("%w: verifier key: %v", ErrInvalid, err)
	}
	cp, _, _, err := log.ParseCheckpoint(msg, v.Name(), v)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(cp.Hash) != tlog.HashSize {
		return nil, fmt.Errorf("%w: root hash is %d bytes", ErrInvalid, len(cp.Hash))
	}
	out := &Checkpoint{Origin: cp.Origin, Size: int64(cp.Size), Note: msg}
	copy(out.Root[:], cp.Hash)
	if out.Size < 0 {
		return nil, fmt.Errorf("%w: size overflows", ErrInvalid)
	}
	return out, nil
}
