// Package pii keeps personal data out of the ledger stream.
//
// An event's personal values (collected and corrected fields, a birth date,
// a guardian's reference, free-text request details and reasons) are split
// from the rest of its data. The ledger record keeps, in their place, keyed
// commitments HMAC-SHA256(K_c, path || 0 || value) where K_c is derived from
// the subject's own data key; the values themselves are sealed with
// AES-256-GCM under a key derived from the same data key and kept in a
// deletable store. Destroying the subject's data key (see Keyring) makes both
// the sealed values and the commitments meaningless, while the ledger's
// bytes, hashes and proofs stay exactly as they were.
package pii

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"custos.dev/ledger/event"
)

// Values are personal values by path ("fields.email", "birth_date",
// "guardian.ref", "details", "reason", "subject").
type Values map[string]json.RawMessage

// Parts is an event's data split into what may be stored in clear and what
// may not.
type Parts struct {
	// Data is the event's data with personal values removed; Commit puts
	// commitments in their place.
	Data map[string]any
	// Personal holds the removed values.
	Personal Values
}

// Split separates the personal values of e.Data.
func Split(e *event.Event) (*Parts, error) {
	raw, err := json.Marshal(e.Data)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	m := map[string]any{}
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	p := &Parts{Data: m, Personal: Values{}}
	take := func(key string) {
		if v, ok := m[key]; ok {
			b, _ := json.Marshal(v)
			p.Personal[key] = b
			delete(m, key)
		}
	}
	if d, ok := e.Data.(*event.SubjectRegistered); ok && d.BirthDate != "" {
		// The age, derived, is what the policy needs; the birth date is sealed.
		if bd, err := time.Parse("2006-01-02", d.BirthDate); err == nil {
			m["age"] = json.Number(fmt.Sprint(AgeAt(bd, e.Time)))
		}
	}
	for _, path := range event.PersonalMembers(e.Type) {
		switch {
		case path == "tracestate":
			if e.Subject != "" && e.TraceState != "" {
				p.Personal["tracestate"], _ = json.Marshal(e.TraceState)
			}
		case strings.HasSuffix(path, ".*"):
			obj := strings.TrimSuffix(path, ".*")
			if f, ok := m[obj].(map[string]any); ok {
				for name, v := range f {
					b, _ := json.Marshal(v)
					p.Personal[obj+"."+name] = b
				}
				delete(m, obj)
			}
		case strings.Contains(path, "."):
			obj, member, _ := strings.Cut(path, ".")
			if g, ok := m[obj].(map[string]any); ok {
				if v, ok := g[member]; ok {
					b, _ := json.Marshal(v)
					p.Personal[path] = b
					delete(g, member)
				}
			}
		default:
			take(path)
		}
	}
	return p, nil
}

// AgeAt is the age in whole years at t of someone born on birth.
func AgeAt(birth, t time.Time) int {
	t = t.UTC()
	age := t.Year() - birth.Year()
	if t.Month() < birth.Month() || (t.Month() == birth.Month() && t.Day() < birth.Day()) {
		age--
	}
	if age < 0 {
		return 0
	}
	return age
}

// PolicyData is the data a policy sees (docs/policy-input.md): field names
// instead of fields, guardian as a presence flag, no personal values.
func (p *Parts) PolicyData() map[string]any {
	out := make(map[string]any, len(p.Data)+1)
	for k, v := range p.Data {
		out[k] = v
	}
	var fields []string
	for path := range p.Personal {
		if name, ok := strings.CutPrefix(path, "fields."); ok {
			fields = append(fields, name)
		}
	}
	if len(fields) > 0 {
		sort.Strings(fields)
		out["fields"] = fields
	}
	if _, ok := p.Data["guardian"]; ok {
		out["guardian"] = true
	}
	return out
}

// StoredPolicyData is what PolicyData gave the policy when the event was
// decided, rebuilt from the record's stored data (where commitments stand
// in for personal values): personal members removed, the names of an
// object of personal values ("fields") listed, and an object holding a
// personal member ("guardian") reduced to true.
func StoredPolicyData(typ string, stored map[string]any) map[string]any {
	out := make(map[string]any, len(stored))
	for k, v := range stored {
		out[k] = v
	}
	for _, path := range event.PersonalMembers(typ) {
		obj, _, nested := strings.Cut(path, ".")
		switch {
		case strings.HasSuffix(path, ".*"):
			if m, ok := out[obj].(map[string]any); ok {
				names := make([]string, 0, len(m))
				for name := range m {
					names = append(names, name)
				}
				sort.Strings(names)
				out[obj] = names
			}
		case nested:
			if _, ok := out[obj]; ok {
				out[obj] = true
			}
		default:
			delete(out, path)
		}
	}
	return out
}

// DataFromPolicyData turns what a policy saw of an event (PolicyData) back
// into the shape of its stored data, for a state to fold (personal values
// are unknown and not needed): an object of personal values listed by name
// gets its names back (values unknown), an object reduced to true an empty
// one.
func DataFromPolicyData(typ string, seen map[string]any) map[string]any {
	out := make(map[string]any, len(seen))
	for k, v := range seen {
		out[k] = v
	}
	for _, path := range event.PersonalMembers(typ) {
		obj, _, nested := strings.Cut(path, ".")
		switch {
		case strings.HasSuffix(path, ".*"):
			if names, ok := out[obj].([]any); ok {
				m := map[string]any{}
				for _, n := range names {
					if s, ok := n.(string); ok {
						m[s] = nil
					}
				}
				out[obj] = m
			}
		case nested:
			if out[obj] == true {
				out[obj] = map[string]any{}
			}
		}
	}
	return out
}

// Committed returns the record data: Data with a commitment in place of
// every personal value.
func (p *Parts) Committed(k *SubjectKey) map[string]any {
	out := make(map[string]any, len(p.Data)+2)
	for key, v := range p.Data {
		out[key] = v
	}
	// A nested object gets a copy before a commitment goes into it, so
	// that p.Data is never changed; "fields" is all commitments.
	nested := func(obj string) {
		cp := map[string]any{}
		if g, ok := p.Data[obj].(map[string]any); ok {
			for key, v := range g {
				cp[key] = v
			}
		}
		out[obj] = cp
	}
	copied := map[string]bool{}
	for path, v := range p.Personal {
		c := k.Commit(path, v)
		obj, member, isNested := strings.Cut(path, ".")
		switch {
		case path == "tracestate":
			// Not a data member: the record keeps no trace state at all.
		case isNested:
			if !copied[obj] {
				nested(obj)
				copied[obj] = true
			}
			out[obj].(map[string]any)[member] = c
		default:
			out[path] = c
		}
	}
	return out
}

// Pseudonymizer derives keyed pseudonyms and MACs with Custos's
// pseudonymization key.
type Pseudonymizer struct{ key []byte }

// NewPseudonymizer uses key (32 bytes) for every pseudonym.
func NewPseudonymizer(key []byte) *Pseudonymizer {
	return &Pseudonymizer{key: append([]byte(nil), key...)}
}

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Pseudonym is the subject's stable token in NATS subjects, records and key
// names: 128 bits of HMAC-SHA256, base32.
func (p *Pseudonymizer) Pseudonym(subject string) string {
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte("custos/pseudonym/v1\x00"))
	m.Write([]byte(subject))
	return b32.EncodeToString(m.Sum(nil)[:16])
}

// MAC is a keyed digest of b under a domain label.
func (p *Pseudonymizer) MAC(label string, b []byte) string {
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte(label))
	m.Write([]byte{0})
	m.Write(b)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
