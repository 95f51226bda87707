package ledger

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// integratorLease elects the one process that signs checkpoints for a
// ledger. The holder renews a KV entry every interval (each renewal is a
// new revision); another process takes over, by compare-and-set on the
// revision it last saw, only after that revision has not changed for
// several intervals by its own clock, so clock skew between hosts does not
// matter. Checkpoints are also appended conditionally, so even two
// processes that both believe they hold the lease cannot fork the log.
type integratorLease struct {
	kv       jetstream.KeyValue
	id       string
	interval time.Duration
	now      func() time.Time

	seenRev    uint64
	seenChange time.Time
}

const leaseKey = "integrator-lease"

func newLease(kv jetstream.KeyValue, interval time.Duration) *integratorLease {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return &integratorLease{kv: kv, id: hex.EncodeToString(b), interval: interval, now: time.Now}
}

// held renews or acquires the lease and reports whether this process holds it.
func (l *integratorLease) held(ctx context.Context) bool {
	e, err := l.kv.Get(ctx, leaseKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		_, err := l.kv.Create(ctx, leaseKey, []byte(l.id))
		return err == nil
	case err != nil:
		return false
	}
	if string(e.Value()) == l.id {
		_, err := l.kv.Update(ctx, leaseKey, []byte(l.id), e.Revision())
		return err == nil
	}
	if e.Revision() != l.seenRev {
		l.seenRev, l.seenChange = e.Revision(), l.now()
		return false
	}
	if l.now().Sub(l.seenChange) < 3*l.interval {
		return false
	}
	_, err = l.kv.Update(ctx, leaseKey, []byte(l.id), e.Revision())
	return err == nil
}
