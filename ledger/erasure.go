package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"custos.dev/ledger/event"
	"custos.dev/ledger/keys"
	"custos.dev/ledger/pii"
	"custos.dev/ledger/record"
	"custos.dev/ledger/state"
)

// afterErasure carries out a recorded privacy.data.erased: scope "all"
// destroys the subject's key and sealed values and records
// custos.key.destroyed before the erasure's receipt is returned; a scope of
// categories deletes the sealed values of the events carrying them. The
// caller holds the subject's lock.
func (l *Ledger) afterErasure(ctx context.Context, e *event.Event, p string, trigger uint64) error {
	d, ok := e.Data.(*event.DataErased)
	if !ok {
		return nil
	}
	if !d.Scope.All {
		return l.purgeCategories(ctx, p, d.Scope.Categories)
	}
	return l.destroySubject(ctx, p, d.Reason, trigger)
}

func (l *Ledger) destroySubject(ctx context.Context, p, reason string, trigger uint64) error {
	if err := l.keyring.Destroy(ctx, p); err != nil {
		if errors.Is(err, keys.ErrUnavailable) {
			return fmt.Errorf("%w: erasure recorded at %d but the key service is unavailable; re-send the erasure to finish it: %v", ErrUnavailable, trigger, err)
		}
		return err
	}
	if err := l.sealed.PurgeSubject(ctx, p); err != nil {
		return fmt.Errorf("%w: purge sealed values: %v", ErrUnavailable, err)
	}
	_, err := l.appendInternal(ctx, p, record.TypeKeyDestroyed, fmt.Sprintf("key-destroyed-%s", p), record.KeyDestroyed{
		Reason: reason, KeyName: pii.SubjectKeyName(p), Trigger: trigger,
	})
	if err == nil {
		l.metrics.keysDestroyed.Inc()
	}
	return err
}

func (l *Ledger) purgeCategories(ctx context.Context, p string, cats []string) error {
	s := l.view.Subject(p)
	if s == nil {
		return nil
	}
	for _, ref := range s.Sealed {
		if slices.ContainsFunc(ref.Categories, func(c string) bool { return slices.Contains(cats, c) }) {
			if err := l.sealed.Delete(ctx, ref.Ref); err != nil {
				return fmt.Errorf("%w: delete sealed values: %v", ErrUnavailable, err)
			}
		}
	}
	return nil
}

// reconcileErasures finishes erasures whose key destruction was cut short
// (a crash, a Vault outage), so that an erasure recorded on the ledger is
// always carried out eventually.
func (l *Ledger) reconcileErasures(ctx context.Context) {
	defer l.done.Done()
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var pending []string
		l.view.EachSubject(func(s *state.Subject) {
			if s.Erased && !s.KeyDestroyed {
				pending = append(pending, s.Pseudonym)
			}
		})
		for _, p := range pending {
			if err := l.enter(); err != nil {
				return
			}
			unlock := l.lockFor(p)
			s := l.view.Subject(p)
			if s != nil && s.Erased && !s.KeyDestroyed {
				if err := l.destroySubject(ctx, p, "request", s.LastSeq); err != nil {
					l.log.Warn("erasure not finished; will retry", "err", err)
				}
			}
			unlock()
			l.inflight.Done()
		}
	}
}

// Personal opens the sealed personal values of one event of a subject.
// It returns pii.ErrErased once the subject's key is destroyed and
// ErrNotFound when the values were erased or never existed.
func (l *Ledger) Personal(ctx context.Context, p, ref string) (pii.Values, error) {
	k, err := l.keyring.Get(ctx, p, false)
	if errors.Is(err, keys.ErrUnavailable) {
		return nil, fmt.Errorf("%w: key service: %v", ErrUnavailable, err)
	}
	if err != nil {
		return nil, err
	}
	sealed, err := l.sealed.Get(ctx, ref)
	if err != nil {
		return nil, ErrNotFound
	}
	return k.Open(ref, sealed)
}

// ErrNotFound reports something the ledger does not hold.
var ErrNotFound = errors.New("not found")
