// Package whatif re-decides recorded history under a candidate policy set:
// every event the ledger appended and every attempt it denied, each with
// the subject state and the notices it was first decided with, so that a
// security team sees what a policy change would have changed before it is
// live (docs/policies.md, "What if"). It reads records only; it never
// appends and never touches the active set.
package whatif

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"custos.dev/ledger/decision"
	"custos.dev/ledger/event"
	"custos.dev/ledger/pii"
	"custos.dev/ledger/policy"
	"custos.dev/ledger/record"
	"custos.dev/ledger/state"
)

// Source yields the ledger's records in sequence order, each as stored (the
// same shape verify reads: a NATS reader or an HTTP replay).
type Source interface {
	Events(ctx context.Context, fn func(seq uint64, body []byte) error) error
}

// Range selects the decisions re-decided; the state is always folded from
// the first record.
type Range struct {
	FromSeq, ToSeq uint64    // zero: unbounded
	Since, Until   time.Time // the event's own time; zero: unbounded
	Type           string    // one event type; empty: all
}

func (r Range) holds(seq uint64, typ string, at time.Time) bool {
	return (r.FromSeq == 0 || seq >= r.FromSeq) && (r.ToSeq == 0 || seq <= r.ToSeq) &&
		(r.Since.IsZero() || !at.Before(r.Since)) && (r.Until.IsZero() || at.Before(r.Until)) &&
		(r.Type == "" || r.Type == typ)
}

// Report is the outcome of Run.
type Report struct {
	Mode            string         `json:"mode"` // "recorded-state" or "cascade"
	CandidateRev    string         `json:"candidate_revision"`
	Records         int            `json:"records"`
	Evaluated       int            `json:"evaluated"`
	Unchanged       int            `json:"unchanged"`
	AllowToDeny     int            `json:"allow_to_deny"`
	DenyToAllow     int            `json:"deny_to_allow"`
	ReasonsOnly     int            `json:"reasons_changed_only"`
	Changes         []Change       `json:"changes"`
	ByReason        map[string]int `json:"changes_by_reason"`
	ByType          map[string]int `json:"changes_by_type"`
	ByDestination   map[string]int `json:"changes_by_destination"`
	DecisionsPerSec float64        `json:"decisions_per_second"`
}

// Changed reports whether any decision would have been different.
func (r *Report) Changed() bool { return len(r.Changes) > 0 }

// Change is one decision the candidate makes differently.
type Change struct {
	Seq         uint64    `json:"seq"`
	Type        string    `json:"type"`
	Time        time.Time `json:"time"`
	Subject     string    `json:"subject,omitempty"` // the pseudonym
	Destination string    `json:"destination,omitempty"`
	Old         Verdict   `json:"old"`
	New         Verdict   `json:"new"`
}

// Verdict is the part of a decision a change compares.
type Verdict struct {
	Allow   bool     `json:"allow"`
	Reasons []string `json:"reasons"`
	Basis   string   `json:"basis,omitempty"`
}

func verdictOf(d decision.Decision) Verdict {
	v := Verdict{Allow: d.Allow, Reasons: []string{}, Basis: d.Basis}
	for _, r := range d.Reasons {
		v.Reasons = append(v.Reasons, r.Code)
	}
	slices.Sort(v.Reasons)
	return v
}

// equal compares a recorded verdict v with a new one; a record made before
// decisions stated a basis has none to compare.
func (v Verdict) equal(o Verdict) bool {
	return v.Allow == o.Allow && (v.Basis == "" || v.Basis == o.Basis) && slices.Equal(v.Reasons, o.Reasons)
}

// Options adjust Run.
type Options struct {
	Range Range
	// Deadline bounds each evaluation (policy.DefaultDeadline when zero).
	Deadline time.Duration
	// Progress, when set, is called with the number of records read.
	Progress func(records int)
	// Cascade rebuilds the state as the candidate would have: an event it
	// denies changes nothing, and an attempt it allows changes the state
	// as an appended event does, so later decisions see the candidate's
	// own history. Otherwise each decision sees the history as recorded.
	Cascade bool
}

// Run re-decides every recorded decision in o.Range under candidate.
func Run(ctx context.Context, src Source, candidate *policy.Set, o Options) (*Report, error) {
	if o.Deadline <= 0 {
		o.Deadline = policy.DefaultDeadline
	}
	mode := "recorded-state"
	if o.Cascade {
		mode = "cascade"
	}
	rep := &Report{Mode: mode, CandidateRev: candidate.Revision(), Changes: []Change{},
		ByReason: map[string]int{}, ByType: map[string]int{}, ByDestination: map[string]int{}}
	subjects := map[string]*state.Subject{}
	var notices []policy.NoticeVersion
	started := time.Now()
	err := src.Events(ctx, func(seq uint64, body []byte) error {
		rep.Records++
		if o.Progress != nil && rep.Records%4096 == 0 {
			o.Progress(rep.Records)
		}
		r, err := record.Unmarshal(body)
		if err != nil {
			return fmt.Errorf("sequence %d: %w", seq, err)
		}
		s := subjects[r.Subject]
		if s == nil && r.Subject != "" {
			s = state.NewSubject(r.Subject)
			subjects[r.Subject] = s
		}
		applied := r
		in, old, ok := recordedDecision(r, s, notices)
		if ok && (o.Cascade || o.Range.holds(seq, in.Event.Type, in.Event.Time)) {
			d, _ := candidate.DecideWithin(ctx, in, o.Deadline)
			if o.Range.holds(seq, in.Event.Type, in.Event.Time) {
				rep.Evaluated++
				oldV, newV := verdictOf(old), verdictOf(d)
				if oldV.equal(newV) {
					rep.Unchanged++
				} else {
					rep.add(Change{Seq: seq, Type: in.Event.Type, Time: in.Event.Time, Subject: r.Subject,
						Destination: destination(in.Event.Data), Old: oldV, New: newV})
				}
			}
			if o.Cascade {
				applied = cascaded(r, in, old.Allow, d.Allow)
			}
		}
		if applied == nil {
			return nil
		}
		if d, ok := noticeOf(applied); ok {
			notices = append(notices, d)
		}
		if s != nil {
			if err := s.Apply(seq, applied); err != nil {
				return fmt.Errorf("sequence %d: %w", seq, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if secs := time.Since(started).Seconds(); secs > 0 {
		rep.DecisionsPerSec = float64(rep.Evaluated) / secs
	}
	return rep, nil
}

func (rep *Report) add(c Change) {
	switch {
	case c.Old.Allow && !c.New.Allow:
		rep.AllowToDeny++
	case !c.Old.Allow && c.New.Allow:
		rep.DenyToAllow++
	default:
		rep.ReasonsOnly++
	}
	rep.Changes = append(rep.Changes, c)
	rep.ByType[c.Type]++
	if c.Destination != "" {
		rep.ByDestination[c.Destination]++
	}
	// A reason counts where it appears or disappears.
	for _, code := range symmetricDiff(c.Old.Reasons, c.New.Reasons) {
		rep.ByReason[code]++
	}
}

func symmetricDiff(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			out = append(out, x)
		}
	}
	return out
}

// recordedDecision is the input a record's decision was made with, and
// that decision, for an appended privacy event or a recorded denial.
func recordedDecision(r *record.Record, s *state.Subject, notices []policy.NoticeVersion) (*policy.Input, decision.Decision, bool) {
	now, err := time.Parse(time.RFC3339Nano, r.RecordedAt)
	if err != nil {
		return nil, decision.Decision{}, false
	}
	in := &policy.Input{Now: now.UTC(), Notices: noticesAt(notices)}
	if s != nil {
		in.Subject = s.PolicyState(in.Now)
	} else {
		in.Subject = state.NewSubject("").PolicyState(in.Now)
	}
	var old decision.Decision
	switch {
	case r.Type == record.TypeDenied:
		var d record.Denied
		if r.DecodeData(&d) != nil {
			return nil, old, false
		}
		data := map[string]any{}
		if json.Unmarshal(d.Attempted, &data) != nil {
			return nil, old, false
		}
		at, _ := time.Parse(time.RFC3339Nano, d.Time)
		in.Event = policy.EventInput{Type: d.Type, Source: d.Source, ID: d.ID, Time: at, Subject: r.Subject, Data: data}
		old = d.Decision
	case strings.HasPrefix(r.Type, "privacy.") && r.Decision != nil:
		data := map[string]any{}
		if json.Unmarshal(r.Data, &data) != nil {
			return nil, old, false
		}
		in.Event = policy.EventInput{Type: r.Type, Source: r.Source, ID: r.ID, Time: r.EventTime(), Subject: r.Subject,
			Data: pii.StoredPolicyData(r.Type, data)}
		old = *r.Decision
	default:
		return nil, old, false
	}
	return in, old, true
}

// cascaded is the record the candidate's history holds in place of r: r
// itself when the candidate decides as recorded, nothing for an event it
// denies, and the attempted event for a denial it allows.
func cascaded(r *record.Record, in *policy.Input, wasAllowed, allows bool) *record.Record {
	switch {
	case wasAllowed == allows:
		return r
	case wasAllowed:
		return nil
	}
	data, err := json.Marshal(pii.DataFromPolicyData(in.Event.Type, in.Event.Data))
	if err != nil {
		return nil
	}
	return &record.Record{V: r.V, Type: in.Event.Type, ID: in.Event.ID, Source: in.Event.Source,
		Time: record.FormatTime(in.Event.Time), Subject: r.Subject, RecordedAt: r.RecordedAt, Data: data}
}

func noticeOf(r *record.Record) (policy.NoticeVersion, bool) {
	if r.Type != event.TypeNoticePublished {
		return policy.NoticeVersion{}, false
	}
	var d event.NoticePublished
	if r.DecodeData(&d) != nil {
		return policy.NoticeVersion{}, false
	}
	return policy.NoticeVersion{Version: d.Version, Effective: d.Effective}, true
}

// noticesAt is the notice history as the view gives it to a decision.
func noticesAt(versions []policy.NoticeVersion) policy.Notices {
	n := policy.Notices{Versions: slices.Clone(versions)}
	if len(versions) > 0 {
		n.Current = versions[len(versions)-1].Version
	}
	return n
}

// destination is the region an event moves data to, when it names one.
func destination(data map[string]any) string {
	for _, k := range []string{"to_region", "region", "storage_region"} {
		if v, ok := data[k].(string); ok {
			return v
		}
	}
	return ""
}
