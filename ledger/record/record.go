// Package record defines the body of a message in the LEDGER stream.
//
// A record is one JSON object on one line, produced by encoding/json from the
// Record struct: struct fields in declaration order, map keys sorted, no
// insignificant white space. Custos hashes exactly the bytes it stores (RFC
// 6962 leaf hash over the message body, docs/architecture.md), so the encoding only has to
// be deterministic for Custos's own duplicate checks, never re-derived by a
// verifier.
//
// A record never holds a subject identifier or a personal value: Subject is
// a keyed pseudonym, and personal values (collected and corrected fields, a
// guardian's reference, a birth date, free-text request details) appear only
// as keyed commitments, while the values themselves live encrypted outside
// the stream under the subject's own key (see package pii).
package record

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	jsonv2 "github.com/go-json-experiment/json"
	"time"

	"custos.dev/ledger/decision"
)

// Version is the record format version written in every record.
const Version = 1

// Internal event types that only Custos writes (docs/schemas/).
const (
	TypeDenied           = "custos.decision.denied"
	TypePolicyActivated  = "custos.policy.activated"
	TypeKeyDestroyed     = "custos.key.destroyed"
	TypeRetentionExpired = "custos.retention.expired"
)

// ErrMalformed reports a stored body that is not a record.
var ErrMalformed = errors.New("malformed record")

// Record is the stored form of one event.
type Record struct {
	V          int    `json:"v"`
	Type       string `json:"type"`
	ID         string `json:"id"`
	Source     string `json:"source"`
	Time       string `json:"time"`
	Subject    string `json:"subject,omitempty"` // keyed pseudonym
	RecordedAt string `json:"recorded_at"`
	// Data is the event's data with personal values replaced by commitments.
	Data json.RawMessage `json:"data"`
	// PII names the sealed personal values of this event in the PII store.
	PII string `json:"pii,omitempty"`
	// ContentMAC is a keyed MAC over the submitted event, so that a re-sent
	// event can be told apart from a different one with the same source+id
	// without storing a digest that could be brute-forced back to values.
	ContentMAC  string             `json:"content_mac,omitempty"`
	Decision    *decision.Decision `json:"decision,omitempty"`
	TraceParent string             `json:"traceparent,omitempty"`
	TraceState  string             `json:"tracestate,omitempty"`
}

// Denied is the data of a custos.decision.denied record.
type Denied struct {
	// Digest is SHA-256 over the redacted attempted event (Attempted's bytes).
	Digest string `json:"digest"`
	Type   string `json:"attempted_type"`
	Source string `json:"attempted_source"`
	ID     string `json:"attempted_id"`
	// Time is the attempted event's own time; the record's time is when
	// Custos refused it. Absent in denials recorded before it was kept.
	Time      string            `json:"attempted_time,omitempty"`
	Attempted json.RawMessage   `json:"attempted"`
	Decision  decision.Decision `json:"decision"`
}

// PolicyActivated is the data of a custos.policy.activated record.
type PolicyActivated struct {
	Revision string `json:"policy_revision"`
	By       string `json:"by"`
	Previous string `json:"previous_revision,omitempty"`
	// BundleRevision and Signer describe a set shipped as an OPA bundle:
	// its manifest revision and the key id that signed it.
	BundleRevision string `json:"bundle_revision,omitempty"`
	Signer         string `json:"signer,omitempty"`
}

// KeyDestroyed is the data of a custos.key.destroyed record.
type KeyDestroyed struct {
	Reason    string `json:"reason"`
	RequestID string `json:"request_id,omitempty"`
	KeyName   string `json:"key_name"`
	// Trigger is the sequence of the erasure that caused the destruction.
	Trigger uint64 `json:"trigger_seq,omitempty"`
}

// RetentionExpired is the data of a custos.retention.expired record.
type RetentionExpired struct {
	Categories []string `json:"categories"`
	// Collected lists the sequences of the collections whose retention ran out.
	Collected []uint64 `json:"collected_seqs"`
	Deadline  string   `json:"deadline"`
}

// Marshal encodes r as a stored body.
func Marshal(r *Record) ([]byte, error) {
	if r.V == 0 {
		r.V = Version
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Unmarshal decodes a stored body of a known version, refusing unknown
// fields and bodies without the fields every record has. It does not
// insist on Marshal's exact spelling: integrity rests on the stored bytes,
// and nothing rebuilds a body from a parsed record.
func Unmarshal(body []byte) (*Record, error) {
	var r Record
	// encoding/json/v2's decoder (the go-json-experiment module): about
	// three times faster than encoding/json's on a typical body, and the
	// follower decodes every record on every start.
	if err := jsonv2.Unmarshal(body, &r, jsonv2.RejectUnknownMembers(true)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if r.V != Version {
		return nil, fmt.Errorf("%w: unknown version %d", ErrMalformed, r.V)
	}
	if r.Type == "" || r.ID == "" || r.Source == "" {
		return nil, fmt.Errorf("%w: missing type, id or source", ErrMalformed)
	}
	if _, err := time.Parse(time.RFC3339Nano, r.Time); err != nil {
		return nil, fmt.Errorf("%w: time: %v", ErrMalformed, err)
	}
	if len(r.Data) == 0 || r.Data[0] != '{' {
		return nil, fmt.Errorf("%w: data is not an object", ErrMalformed)
	}
	return &r, nil
}

// EventTime returns the parsed event time.
func (r *Record) EventTime() time.Time {
	t, _ := time.Parse(time.RFC3339Nano, r.Time)
	return t
}

// DecodeData decodes r.Data into v.
func (r *Record) DecodeData(v any) error {
	if err := json.Unmarshal(r.Data, v); err != nil {
		return fmt.Errorf("%w: data of %s: %v", ErrMalformed, r.Type, err)
	}
	return nil
}

// FormatTime is the one time format of records.
func FormatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
