package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"custos.dev/ledger/pii"
	"custos.dev/ledger/record"
	"custos.dev/ledger/state"
)

// SubjectAt rebuilds a subject's state as the ledger had recorded it by
// at: records are taken by when they were recorded, not by the time their
// events claim, so a backdated consent does not appear in the state of an
// instant before it was recorded (its event time is shown in the state).
// It reads only that subject's records, through the stream's subject index,
// so its cost does not grow with the ledger.
func (l *Ledger) SubjectAt(ctx context.Context, p string, at time.Time) (*state.Subject, error) {
	s := state.NewSubject(p)
	err := l.subjectRecords(ctx, p, func(seq uint64, r *record.Record) error {
		if recorded, err := time.Parse(time.RFC3339Nano, r.RecordedAt); err != nil || recorded.After(at) {
			return nil
		}
		return s.Apply(seq, r)
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// subjectRecords reads a subject's records in sequence order from the
// index's copy, so the cost follows the subject's records and not the size
// of the ledger.
func (l *Ledger) subjectRecords(ctx context.Context, p string, fn func(seq uint64, r *record.Record) error) error {
	// Records this process appended reach the copy with the follower.
	if err := l.waitApplied(ctx, l.view.LastSeq(p)); err != nil {
		return err
	}
	recs, err := l.subjects.Records(p)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for _, rec := range recs {
		r, err := record.Unmarshal(rec.Body)
		if err != nil {
			return fmt.Errorf("%w: sequence %d: %v", ErrIntegrity, rec.Seq, err)
		}
		if err := fn(rec.Seq, r); err != nil {
			return err
		}
	}
	return nil
}

// ExportEvent is one event in a subject's export.
type ExportEvent struct {
	Seq      uint64          `json:"seq"`
	Type     string          `json:"type"`
	ID       string          `json:"id"`
	Source   string          `json:"source"`
	Time     string          `json:"time"`
	Data     json.RawMessage `json:"data"`
	Personal map[string]any  `json:"personal,omitempty"`
	// Erased is set when the event's personal values were erased.
	Erased bool `json:"erased,omitempty"`
}

// Export returns every event of a subject with its personal values opened
// where they still exist, and the subject's current state.
func (l *Ledger) Export(ctx context.Context, p string) ([]ExportEvent, *state.Subject, error) {
	var out []ExportEvent
	s := state.NewSubject(p)
	keyGone := false
	err := l.subjectRecords(ctx, p, func(seq uint64, r *record.Record) error {
		if err := s.Apply(seq, r); err != nil {
			return err
		}
		ev := ExportEvent{Seq: seq, Type: r.Type, ID: r.ID, Source: r.Source, Time: r.Time, Data: r.Data}
		if r.PII != "" {
			switch vals, err := l.openIfKept(ctx, p, r.PII, &keyGone); {
			case err != nil:
				return err
			case vals == nil:
				ev.Erased = true
			default:
				ev.Personal = map[string]any{}
				for k, v := range vals {
					var x any
					_ = json.Unmarshal(v, &x)
					ev.Personal[k] = x
				}
			}
		}
		out = append(out, ev)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return out, s, nil
}

func (l *Ledger) openIfKept(ctx context.Context, p, ref string, keyGone *bool) (pii.Values, error) {
	if *keyGone {
		return nil, nil
	}
	vals, err := l.Personal(ctx, p, ref)
	switch {
	case errors.Is(err, pii.ErrErased), errors.Is(err, pii.ErrNoKey):
		*keyGone = true
		return nil, nil
	case errors.Is(err, ErrNotFound):
		return nil, nil
	}
	return vals, err
}
