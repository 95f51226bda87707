// Package state projects the ledger into what decisions and auditors need:
// each data subject's registration, consents, holdings, transfers, rights
// requests and erasure, and the ledger-wide notice history, id index and
// transfer register. Every projection is a pure function of the records in
// sequence order, so the same code serves the live view and point-in-time
// rebuilds.
package state

import (
	"encoding/json"
	"slices"
	"sort"
	"time"

	"custos.dev/ledger/event"
	"custos.dev/ledger/policy"
	"custos.dev/ledger/record"
)

// Consent is a granted consent with its ledger position.
type Consent struct {
	policy.ConsentState
	Seq uint64 `json:"seq"`
}

// Holding is data of one category held about a subject.
type Holding struct {
	Category string   `json:"category"`
	Regions  []string `json:"regions"`
	Purposes []string `json:"purposes"`
	// Bases are the lawful bases the held data was collected on, as their
	// decisions state.
	Bases []string `json:"bases"`
	// Collections are the sequences of the collections still held.
	Collections []uint64 `json:"collection_seqs"`
	// RetainUntil is the latest retention deadline among them.
	RetainUntil time.Time `json:"retain_until"`
	deadlines   map[uint64]time.Time
}

// Transfer is one recorded cross-border or domestic transfer.
type Transfer struct {
	Seq        uint64    `json:"seq"`
	Time       time.Time `json:"time"`
	TransferID string    `json:"transfer_id"`
	Recipient  string    `json:"recipient"`
	From       string    `json:"from_region"`
	To         string    `json:"to_region"`
	Categories []string  `json:"categories"`
	Purpose    string    `json:"purpose"`
	Mechanism  string    `json:"mechanism,omitempty"`
	// AssessmentRef names the transfer's impact assessment, when given.
	AssessmentRef  string `json:"assessment_ref,omitempty"`
	Basis          string `json:"basis,omitempty"`
	TransferGround string `json:"transfer_ground,omitempty"`
}

// Request is a data-subject rights request.
type Request struct {
	RequestID   string     `json:"request_id"`
	Right       string     `json:"right"`
	Seq         uint64     `json:"seq"`
	RequestedAt time.Time  `json:"requested_at"`
	Status      string     `json:"status"` // open, fulfilled, rejected
	CompletedAt *time.Time `json:"completed_at,omitempty"`
	CompletedBy uint64     `json:"completed_seq,omitempty"`
}

// SealedRef points at the sealed personal values of one event.
type SealedRef struct {
	Seq        uint64   `json:"seq"`
	Ref        string   `json:"ref"`
	Type       string   `json:"type"`
	Categories []string `json:"categories,omitempty"`
}

// Subject is one data subject's projected state.
type Subject struct {
	Pseudonym        string              `json:"subject"`
	Registered       bool                `json:"registered"`
	Residence        string              `json:"residence,omitempty"`
	RegisteredAge    *int                `json:"-"`
	RegisteredAt     time.Time           `json:"-"`
	Erased           bool                `json:"erased"`
	ErasedAt         *time.Time          `json:"erased_at,omitempty"`
	KeyDestroyed     bool                `json:"key_destroyed"`
	ErasedCategories []string            `json:"erased_categories"`
	LastSeq          uint64              `json:"last_seq"`
	StateSeq         uint64              `json:"-"` // LastSeq without denials
	Consents         []*Consent          `json:"consents"`
	Holdings         map[string]*Holding `json:"holdings"`
	Transfers        []Transfer          `json:"transfers"`
	Requests         []*Request          `json:"requests"`
	Sealed           []SealedRef         `json:"sealed"`
	Events           int                 `json:"events"`
	Denials          int                 `json:"denials"`
}

// NewSubject returns the empty state of a subject.
func NewSubject(pseudonym string) *Subject {
	return &Subject{Pseudonym: pseudonym, Sealed: []SealedRef{}, Holdings: map[string]*Holding{}, ErasedCategories: []string{}, Consents: []*Consent{}, Transfers: []Transfer{}, Requests: []*Request{}}
}

// Apply folds one record of this subject into the state. Records must come
// in sequence order; one already applied is ignored.
func (s *Subject) Apply(seq uint64, r *record.Record) error {
	d, err := Decode(r)
	if err != nil {
		return err
	}
	s.ApplyDecoded(seq, r, d)
	return nil
}

// Decoded is what applying a record needs from its body, decoded ahead so
// that the decoding happens outside any lock on the state.
type Decoded struct {
	time time.Time
	// sealedCategories are the categories of a record with sealed values.
	sealedCategories []string
	// data is the record's data as the struct of its type, for the types
	// that change a subject's state or the view's notices and revision.
	data any
}

// Decode decodes what applying r needs: what ApplyDecoded folds into a
// subject, and the notice or policy revision the view keeps.
func Decode(r *record.Record) (*Decoded, error) {
	d := &Decoded{time: r.EventTime()}
	if r.PII != "" {
		var c struct {
			Categories []string `json:"categories"`
		}
		_ = json.Unmarshal(r.Data, &c)
		d.sealedCategories = c.Categories
	}
	var data any
	switch r.Type {
	case "privacy.subject.registered":
		data = &event.SubjectRegistered{}
	case "privacy.consent.granted":
		data = &event.ConsentGranted{}
	case "privacy.consent.withdrawn":
		data = &event.ConsentWithdrawn{}
	case "privacy.data.collected":
		data = &event.DataCollected{}
	case "privacy.data.transferred":
		data = &event.DataTransferred{}
	case "privacy.rights.requested":
		data = &event.RightsRequested{}
	case "privacy.rights.completed":
		data = &event.RightsCompleted{}
	case "privacy.data.erased":
		data = &event.DataErased{}
	case record.TypeRetentionExpired:
		data = &record.RetentionExpired{}
	case "privacy.notice.published":
		data = &event.NoticePublished{}
	case record.TypePolicyActivated:
		data = &record.PolicyActivated{}
	default:
		return d, nil
	}
	if err := r.DecodeData(data); err != nil {
		return nil, err
	}
	d.data = data
	return d, nil
}

// ApplyDecoded is Apply with r's body decoded by Decode.
func (s *Subject) ApplyDecoded(seq uint64, r *record.Record, dec *Decoded) {
	if seq <= s.LastSeq {
		return
	}
	s.LastSeq = seq
	if r.Type != record.TypeDenied {
		s.StateSeq = seq
	}
	s.Events++
	t := dec.time
	if r.PII != "" {
		s.Sealed = append(s.Sealed, SealedRef{Seq: seq, Ref: r.PII, Type: r.Type, Categories: dec.sealedCategories})
	}
	switch d := dec.data.(type) {
	case *event.SubjectRegistered:
		s.Registered, s.Residence, s.RegisteredAt = true, d.Residence, t
		s.RegisteredAge = d.Age
	case *event.ConsentGranted:
		s.Consents = append(s.Consents, &Consent{Seq: seq, ConsentState: policy.ConsentState{
			ConsentID: d.ConsentID, NoticeVersion: d.NoticeVersion,
			Purposes: orEmpty(d.Purposes), Categories: orEmpty(d.Categories), Destinations: orEmpty(d.Destinations),
			Recipients: orEmpty(d.Recipients), Cookies: orEmpty(d.Cookies), Guardian: d.Guardian != nil,
			RisksInformed: d.RisksInformed, GrantedAt: t, Expires: d.Expires, WithdrawnScope: emptyScope(),
		}})
	case *event.ConsentWithdrawn:
		s.withdraw(d, t)
	case *event.DataCollected:
		deadline := t
		if dur, err := event.ParseDuration(d.Retention); err == nil {
			deadline = dur.AddTo(t)
		}
		for _, c := range d.Categories {
			s.hold(c, d.StorageRegion, d.Purpose, basisOf(r), seq, deadline)
		}
	case *event.DataTransferred:
		tr := Transfer{Seq: seq, Time: t, TransferID: d.TransferID, Recipient: d.Recipient,
			From: d.FromRegion, To: d.ToRegion, Categories: d.Categories, Purpose: d.Purpose, Mechanism: d.Mechanism,
			AssessmentRef: d.AssessmentRef, Basis: basisOf(r)}
		if r.Decision != nil {
			tr.TransferGround = r.Decision.TransferGround
		}
		s.Transfers = append(s.Transfers, tr)
	case *event.RightsRequested:
		s.Requests = append(s.Requests, &Request{RequestID: d.RequestID, Right: d.Right, Seq: seq, RequestedAt: t, Status: "open"})
	case *event.RightsCompleted:
		for _, q := range s.Requests {
			if q.RequestID == d.RequestID && q.Status == "open" {
				at := t
				q.Status, q.CompletedAt, q.CompletedBy = d.Outcome, &at, seq
			}
		}
	case *event.DataErased:
		if d.Scope.All {
			at := t
			s.Erased, s.ErasedAt = true, &at
			for c := range s.Holdings {
				s.eraseCategory(c)
			}
		} else {
			for _, c := range d.Scope.Categories {
				s.eraseCategory(c)
			}
		}
	case *record.RetentionExpired:
		for _, c := range d.Categories {
			s.expire(c, d.Collected)
		}
	}
	switch r.Type {
	case record.TypeKeyDestroyed:
		s.KeyDestroyed = true
		if !s.Erased {
			at := t
			s.Erased, s.ErasedAt = true, &at
		}
	case record.TypeDenied:
		s.Denials++
	}
}

// basisOf is the lawful basis the record's decision states; records decided
// before decisions stated one have none.
func basisOf(r *record.Record) string {
	if r.Decision == nil {
		return ""
	}
	return r.Decision.Basis
}

func (s *Subject) hold(cat, region, purpose, basis string, seq uint64, deadline time.Time) {
	h := s.Holdings[cat]
	if h == nil {
		h = &Holding{Category: cat, Bases: []string{}, deadlines: map[uint64]time.Time{}}
		s.Holdings[cat] = h
	}
	if !slices.Contains(h.Regions, region) {
		h.Regions = append(h.Regions, region)
		sort.Strings(h.Regions)
	}
	if !slices.Contains(h.Purposes, purpose) {
		h.Purposes = append(h.Purposes, purpose)
		sort.Strings(h.Purposes)
	}
	if basis != "" && !slices.Contains(h.Bases, basis) {
		h.Bases = append(h.Bases, basis)
		sort.Strings(h.Bases)
	}
	h.Collections = append(h.Collections, seq)
	h.deadlines[seq] = deadline
	h.recompute()
	s.ErasedCategories = slices.DeleteFunc(s.ErasedCategories, func(c string) bool { return c == cat })
}

func (h *Holding) recompute() {
	h.RetainUntil = time.Time{}
	for _, d := range h.deadlines {
		if d.After(h.RetainUntil) {
			h.RetainUntil = d
		}
	}
}

// Deadline is the retention deadline of one collection still held.
func (h *Holding) Deadline(seq uint64) (time.Time, bool) {
	d, ok := h.deadlines[seq]
	return d, ok
}

func (s *Subject) eraseCategory(cat string) {
	delete(s.Holdings, cat)
	if !slices.Contains(s.ErasedCategories, cat) {
		s.ErasedCategories = append(s.ErasedCategories, cat)
		sort.Strings(s.ErasedCategories)
	}
}

// expire drops the given collections of a category; the category is erased
// once none is left.
func (s *Subject) expire(cat string, seqs []uint64) {
	h := s.Holdings[cat]
	if h == nil {
		return
	}
	h.Collections = slices.DeleteFunc(h.Collections, func(q uint64) bool { return slices.Contains(seqs, q) })
	for _, q := range seqs {
		delete(h.deadlines, q)
	}
	if len(h.Collections) == 0 {
		s.eraseCategory(cat)
		return
	}
	h.recompute()
}

func (s *Subject) withdraw(d *event.ConsentWithdrawn, t time.Time) {
	scoped := len(d.Purposes)+len(d.Destinations)+len(d.Cookies)+len(d.Categories) > 0
	for _, c := range s.Consents {
		if c.Withdrawn || (d.ConsentID != "" && c.ConsentID != d.ConsentID) {
			continue
		}
		if !scoped {
			at := t
			c.Withdrawn, c.WithdrawnAt = true, &at
			continue
		}
		w := &c.WithdrawnScope
		w.Purposes = union(w.Purposes, d.Purposes)
		w.Destinations = union(w.Destinations, d.Destinations)
		w.Cookies = union(w.Cookies, d.Cookies)
		w.Categories = union(w.Categories, d.Categories)
	}
}

// PolicyState is the state a policy sees (docs/policy-input.md) at now.
func (s *Subject) PolicyState(now time.Time) policy.SubjectState {
	out := policy.SubjectState{
		Registered: s.Registered, Residence: s.Residence, Erased: s.Erased || s.KeyDestroyed,
		ErasedCategories: slices.Clone(s.ErasedCategories), LastSeq: s.LastSeq, StateSeq: s.StateSeq,
		Consents: make([]policy.ConsentState, len(s.Consents)),
	}
	if s.RegisteredAge != nil {
		age := *s.RegisteredAge + wholeYears(s.RegisteredAt, now)
		out.Age = &age
	}
	for i, c := range s.Consents {
		out.Consents[i] = c.ConsentState
	}
	return out
}

// Clone returns a deep enough copy for readers outside the view's lock.
func (s *Subject) Clone() *Subject {
	b, _ := json.Marshal(s)
	c := NewSubject(s.Pseudonym)
	_ = json.Unmarshal(b, c)
	c.RegisteredAge, c.RegisteredAt = s.RegisteredAge, s.RegisteredAt
	for cat, h := range s.Holdings {
		ch := c.Holdings[cat]
		ch.deadlines = make(map[uint64]time.Time, len(h.deadlines))
		for k, v := range h.deadlines {
			ch.deadlines[k] = v
		}
	}
	return c
}

func wholeYears(from, to time.Time) int {
	// Dates are compared in UTC, as records' times are: a caller's clock in
	// another zone must not move an anniversary by a day.
	from, to = from.UTC(), to.UTC()
	if to.Before(from) {
		return 0
	}
	y := to.Year() - from.Year()
	if to.Month() < from.Month() || (to.Month() == from.Month() && to.Day() < from.Day()) {
		y--
	}
	if y < 0 {
		return 0
	}
	return y
}

func union(a, b []string) []string {
	for _, x := range b {
		if !slices.Contains(a, x) {
			a = append(a, x)
		}
	}
	sort.Strings(a)
	return a
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func emptyScope() policy.Scope {
	return policy.Scope{Purposes: []string{}, Destinations: []string{}, Cookies: []string{}, Categories: []string{}}
}
