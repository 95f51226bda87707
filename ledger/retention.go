package ledger

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"sort"
	"time"

	"custos.dev/ledger/record"
	"custos.dev/ledger/state"
)

// RunRetention runs RetentionOnce every interval until ctx is done.
func (l *Ledger) RunRetention(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := l.RetentionOnce(ctx); err != nil {
			l.log.Warn("retention pass incomplete; will retry", "err", err, "expired", n)
		} else if n > 0 {
			l.log.Info("retention pass", "expired", n)
		}
	}
}

type expiry struct {
	pseudonym string
	category  string
	seqs      []uint64
	deadline  time.Time
}

// RetentionOnce erases every collection whose retention period has run out
// by the ledger's clock: its sealed values are deleted and a
// custos.retention.expired record names the categories and collections.
// Each expiry has a deterministic id, so a pass cut short by a crash is
// finished by the next one and never recorded twice. It returns the number
// of expiries recorded.
func (l *Ledger) RetentionOnce(ctx context.Context) (int, error) {
	now := l.now()
	var due []expiry
	l.view.EachSubject(func(s *state.Subject) {
		if s.Erased {
			return
		}
		for cat, h := range s.Holdings {
			e := expiry{pseudonym: s.Pseudonym, category: cat}
			for _, seq := range h.Collections {
				if d, ok := h.Deadline(seq); ok && !d.After(now) {
					e.seqs = append(e.seqs, seq)
					if d.After(e.deadline) {
						e.deadline = d
					}
				}
			}
			if len(e.seqs) > 0 {
				slices.Sort(e.seqs)
				due = append(due, e)
			}
		}
	})
	sort.Slice(due, func(i, j int) bool {
		if due[i].pseudonym != due[j].pseudonym {
			return due[i].pseudonym < due[j].pseudonym
		}
		return due[i].category < due[j].category
	})
	n := 0
	for _, e := range due {
		if err := l.expire(ctx, e); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (l *Ledger) expire(ctx context.Context, e expiry) error {
	if err := l.enter(); err != nil {
		return err
	}
	defer l.inflight.Done()
	unlock := l.lockFor(e.pseudonym)
	defer unlock()
	s := l.view.Subject(e.pseudonym)
	if s == nil {
		return nil
	}
	// Delete the values first: a crash between the two leaves values
	// deleted and the record still to be written, which the next pass does.
	for _, ref := range s.Sealed {
		if slices.Contains(e.seqs, ref.Seq) {
			if err := l.sealed.Delete(ctx, ref.Ref); err != nil {
				return fmt.Errorf("%w: delete sealed values: %v", ErrUnavailable, err)
			}
		}
	}
	// The id names the expired collections, so the same expiry is never
	// recorded twice; hashed, because a subject may have many of them.
	h := sha256.New()
	for _, q := range e.seqs {
		fmt.Fprintf(h, "%d.", q)
	}
	id := fmt.Sprintf("retention-%s-%s-%x", e.pseudonym, e.category, h.Sum(nil)[:16])
	_, err := l.appendInternal(ctx, e.pseudonym, record.TypeRetentionExpired, id, record.RetentionExpired{
		Categories: []string{e.category}, Collected: e.seqs, Deadline: record.FormatTime(e.deadline),
	})
	return err
}
