// Package checkpoint signs and opens the ledger's checkpoints: C2SP
// tlog-checkpoint signed notes (https://c2sp.org/tlog-checkpoint) whose
// signature is an Ed25519 note signature (golang.org/x/mod/sumdb/note), so
// that anyone holding the verifier key can check them with standard tools
// and no Custos code. Custos signs with a Vault transit key through
// keys.NoteSigner; this package needs neither Vault nor any signer of its
// own, so a verifier can use it alone.
package checkpoint

import (
	"errors"
	"fmt"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
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
