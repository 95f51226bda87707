package keys

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// NoteSigner is a note.Signer (golang.org/x/mod/sumdb/note) whose Ed25519
// private key is a Vault transit key and never leaves Vault: it signs the
// ledger's checkpoints.
type NoteSigner struct {
	keys    *Client
	keyName string
	origin  string
	pub     ed25519.PublicKey
	vkey    string
	hash    uint32
	timeout time.Duration
}

// NewSigner makes sure the ed25519 transit key exists and reads its public
// half. The note key name is the log origin.
func NewNoteSigner(ctx context.Context, c *Client, keyName, origin string) (*NoteSigner, error) {
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
	return &NoteSigner{keys: c, keyName: keyName, origin: origin, pub: pub, vkey: vkey, hash: uint32(h), timeout: 10 * time.Second}, nil
}

// Name implements note.Signer.
func (s *NoteSigner) Name() string { return s.origin }

// KeyHash implements note.Signer.
func (s *NoteSigner) KeyHash() uint32 { return s.hash }

// Sign implements note.Signer by asking Vault to sign msg.
func (s *NoteSigner) Sign(msg []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	sig, err := s.keys.Sign(ctx, s.keyName, msg)
	if err != nil {
		return nil, err
	}
	// Never publish a signature the verifier key would reject: a rotated
	// or replaced transit key must stop signing, not fork the log's key.
	if !ed25519.Verify(s.pub, msg, sig) {
		return nil, fmt.Errorf("checkpoint signer: vault signature does not match the verifier key")
	}
	return sig, nil
}

// VerifierKey is the note verifier key (served at GET /v1/checkpoint/key).
func (s *NoteSigner) VerifierKey() string { return s.vkey }

// Origin is the log's origin line.
func (s *NoteSigner) Origin() string { return s.origin }
