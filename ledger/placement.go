package ledger

import (
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"custos.dev/ledger/state"
)

// placement is what a record's hashed body says about how it was stored:
// Custos publishes a record on SubjectFor(subject, type) with the
// deduplication id IDKey(source, id).
type placement struct {
	Type    string `json:"type"`
	Subject string `json:"subject"`
	Source  string `json:"source"`
	ID      string `json:"id"`
}

// checkPlacement refuses a stored record whose NATS subject or
// deduplication header is not the one its body implies. Neither is covered
// by the Merkle tree, and whoever can write the store can change them (and
// the store's checksum with them), so nothing may be derived from them: a
// record moved to another data subject's NATS subject would otherwise count
// for that subject (docs/threat-model.md, "Where a record belongs").
func checkPlacement(seq uint64, natsSubject, msgID string, body []byte) error {
	var p placement
	if err := json.Unmarshal(body, &p); err != nil {
		return &MisplacedError{Seq: seq, Problem: fmt.Sprintf("sequence %d is not a valid record: %v", seq, err)}
	}
	return checkPlaced(seq, natsSubject, msgID, p)
}

// checkPlaced is checkPlacement for a body already parsed (the follower
// parses every record anyway).
func checkPlaced(seq uint64, natsSubject, msgID string, p placement) error {
	if want := SubjectFor(p.Subject, p.Type); natsSubject != want {
		return &MisplacedError{Seq: seq, Problem: fmt.Sprintf("sequence %d is stored under NATS subject %s but its body belongs under %s", seq, natsSubject, want)}
	}
	if want := state.IDKey(p.Source, p.ID); msgID != want {
		return &MisplacedError{Seq: seq, Problem: fmt.Sprintf("sequence %d carries %s %q but its body's source and id give %q", seq, jetstream.MsgIDHeader, msgID, want)}
	}
	return nil
}

// MisplacedError is a stored record whose NATS subject or deduplication
// header disagrees with its body. It is an ErrIntegrity.
type MisplacedError struct {
	Seq     uint64
	Problem string // names the sequence
}

func (e *MisplacedError) Error() string { return ErrIntegrity.Error() + ": " + e.Problem }

func (e *MisplacedError) Is(target error) bool { return target == ErrIntegrity }
