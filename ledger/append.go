package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/mod/sumdb/tlog"

	"custos.dev/ledger/event"
	"custos.dev/ledger/keys"
	"custos.dev/ledger/pii"
	"custos.dev/ledger/policy"
	"custos.dev/ledger/record"
	"custos.dev/ledger/state"
)

// Receipt is what an acknowledged append returns (docs/openapi.yaml).
type Receipt struct {
	Seq       uint64          `json:"seq"`
	LeafHash  string          `json:"leaf_hash"` // standard base64
	Decision  policy.Decision `json:"decision"`
	Duplicate bool            `json:"-"`
}

// InternalSource is the CloudEvents source of records Custos writes itself.
const InternalSource = "custos://ledger"

// maxDecideRounds bounds how often an append re-decides after losing a race
// for its subject to another process.
const maxDecideRounds = 8

// lockFor serializes a subject's appends in this process and returns the
// unlock. The lock is held until the append is acknowledged, so each
// subject has one lock of its own rather than a stripe shared with others:
// with a stripe, appends of unrelated subjects would wait for each other's
// fsync.
func (l *Ledger) lockFor(pseudonym string) func() {
	if pseudonym == "" {
		return func() {}
	}
	l.subjectLocks.mu.Lock()
	sl := l.subjectLocks.m[pseudonym]
	if sl == nil {
		sl = &subjectLock{}
		l.subjectLocks.m[pseudonym] = sl
	}
	sl.refs++
	l.subjectLocks.mu.Unlock()
	sl.mu.Lock()
	return func() {
		sl.mu.Unlock()
		l.subjectLocks.mu.Lock()
		if sl.refs--; sl.refs == 0 {
			delete(l.subjectLocks.m, pseudonym)
		}
		l.subjectLocks.mu.Unlock()
	}
}

// subjectLocks holds the lock of every subject with an append in progress.
type subjectLocks struct {
	mu sync.Mutex
	m  map[string]*subjectLock
}

type subjectLock struct {
	mu   sync.Mutex
	refs int // appends holding or waiting for mu; guarded by subjectLocks.mu
}

// Decide returns the decision e would get now, appending nothing.
func (l *Ledger) Decide(ctx context.Context, e *event.Event) (policy.Decision, error) {
	parts, err := pii.Split(e)
	if err != nil {
		return policy.Decision{}, err
	}
	p := l.subjectOf(e)
	in := l.input(e, p, parts, l.view.PolicySubject(p, l.now()))
	return l.opts.Policy.Decide(ctx, in), nil
}

func (l *Ledger) subjectOf(e *event.Event) string {
	if e.Subject == "" {
		return ""
	}
	return l.pseud.Pseudonym(e.Subject)
}

func (l *Ledger) input(e *event.Event, p string, parts *pii.Parts, st policy.SubjectState) *policy.Input {
	return &policy.Input{
		Now:     l.now().UTC(),
		Event:   policy.EventInput{Type: e.Type, Source: e.Source, ID: e.ID, Time: e.Time, Subject: p, Data: parts.PolicyData()},
		Subject: st,
		Notices: l.view.Notices(),
	}
}

// contentMAC is the keyed digest of everything the emitter sent.
func (l *Ledger) contentMAC(e *event.Event) string {
	b, _ := json.Marshal(e)
	return l.pseud.MAC("custos/content/v1", b)
}

// Append validates nothing (the caller has decoded e with package event);
// it decides e and appends it, or records its denial. It returns the
// receipt, a *DeniedError, ErrConflict, or an error wrapping ErrUnavailable.
func (l *Ledger) Append(ctx context.Context, e *event.Event) (*Receipt, error) {
	if err := l.enter(); err != nil {
		return nil, err
	}
	defer l.inflight.Done()
	if err := l.err(); err != nil {
		return nil, err
	}
	started := time.Now()
	rc, err := l.append(ctx, e)
	l.metrics.observe(e.Type, started, rc, err)
	return rc, err
}

func (l *Ledger) append(ctx context.Context, e *event.Event) (*Receipt, error) {
	key := state.IDKey(e.Source, e.ID)
	mac := l.contentMAC(e)
	if rc, err, done := l.duplicate(ctx, key, mac, e); done {
		return rc, err
	}
	p := l.subjectOf(e)
	unlock := l.lockFor(p)
	defer unlock()
	// A concurrent request with the same id may have won while we waited.
	if rc, err, done := l.duplicate(ctx, key, mac, e); done {
		return rc, err
	}
	parts, err := pii.Split(e)
	if err != nil {
		return nil, err
	}
	for round := 0; round < maxDecideRounds; round++ {
		st := l.view.PolicySubject(p, l.now())
		dec := l.opts.Policy.Decide(ctx, l.input(e, p, parts, st))
		var rc *Receipt
		if dec.Allow {
			rc, err = l.appendAllowed(ctx, e, p, key, mac, parts, st.LastSeq, dec)
		} else {
			rc, err = l.appendDenial(ctx, e, p, key, mac, parts, st, dec)
		}
		if errors.Is(err, errStale) {
			l.metrics.conflicts.Inc()
			if err := l.catchUp(ctx, p); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		if rc.Duplicate {
			// Another process appended the same id between our check and
			// our publish; JetStream's window told us its sequence.
			if err := l.waitApplied(ctx, rc.Seq); err != nil {
				return nil, err
			}
			rc, err, _ := l.duplicate(ctx, key, mac, e)
			return rc, err
		}
		if !dec.Allow {
			return nil, &DeniedError{Decision: dec, Seq: rc.Seq}
		}
		if e.Type == "privacy.data.erased" {
			if err := l.afterErasure(ctx, e, p, rc.Seq); err != nil {
				return nil, err
			}
		}
		return rc, nil
	}
	return nil, fmt.Errorf("%w: subject kept changing under concurrent appends", ErrUnavailable)
}

// errStale: the subject's state moved on in another process between the
// decision and the append; decide again.
var errStale = errors.New("subject state is stale")

// duplicate answers a re-sent event from the id index, rebuilding the
// original receipt from the stored record.
func (l *Ledger) duplicate(ctx context.Context, key, mac string, e *event.Event) (*Receipt, error, bool) {
	ent, ok, err := l.view.Lookup(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err), true
	}
	if !ok {
		return nil, nil, false
	}
	if ent.MAC != state.MACDigest(mac) {
		return nil, ErrConflict, true
	}
	_, body, err := l.GetRecord(ctx, ent.Seq)
	if err != nil {
		return nil, fmt.Errorf("%w: read original record %d: %v", ErrUnavailable, ent.Seq, err), true
	}
	leaf := tlog.RecordHash(body)
	rc := &Receipt{Seq: ent.Seq, LeafHash: base64.StdEncoding.EncodeToString(leaf[:]), Duplicate: true}
	if r, err := record.Unmarshal(body); err == nil && r.Decision != nil {
		rc.Decision = *r.Decision
	}
	// An erasure whose key destruction did not finish (Vault was down) is
	// finished by its re-send.
	if e.Type == "privacy.data.erased" {
		if s := l.view.Subject(l.subjectOf(e)); s != nil && s.Erased && !s.KeyDestroyed {
			if err := l.afterErasure(ctx, e, s.Pseudonym, ent.Seq); err != nil {
				return nil, err, true
			}
		}
	}
	return rc, nil, true
}

// catchUp waits until the follower has applied everything the subject has
// on the stream now.
func (l *Ledger) catchUp(ctx context.Context, p string) error {
	filter := SubjectFilter(p)
	if p == "" {
		filter = subjectPrefix + ".g.>"
	}
	m, err := l.stream.GetLastMsgForSubject(ctx, filter)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return l.waitApplied(ctx, m.Sequence)
}

func (l *Ledger) appendAllowed(ctx context.Context, e *event.Event, p, key, mac string, parts *pii.Parts, last uint64, dec policy.Decision) (*Receipt, error) {
	data := parts.Data
	var ref string
	k, err := l.keyFor(ctx, p)
	if err != nil {
		return nil, err
	}
	if k != nil {
		if err := l.sealSubject(ctx, k, p, e.Subject); err != nil {
			return nil, err
		}
		data = parts.Committed(k)
		if len(parts.Personal) > 0 {
			ref = pii.Ref(p, key)
			sealed, err := k.Seal(ref, parts.Personal)
			if err != nil {
				return nil, err
			}
			if err := l.sealed.Put(ctx, ref, sealed); err != nil {
				return nil, fmt.Errorf("%w: store sealed values: %v", ErrUnavailable, err)
			}
		}
	}
	rec := &record.Record{
		Type: e.Type, ID: e.ID, Source: e.Source, Time: record.FormatTime(e.Time), Subject: p,
		RecordedAt: record.FormatTime(l.now()), Data: marshalJSON(data), PII: ref, ContentMAC: mac,
		Decision: &dec, TraceParent: e.TraceParent, TraceState: e.TraceState,
	}
	if _, sealed := parts.Personal["tracestate"]; sealed {
		rec.TraceState = ""
	}
	return l.publish(ctx, p, rec, key, last)
}

// keyFor returns the subject's key, creating it for a new subject. For an
// erased subject whose event the policy still allows (closing the erasure
// request), it returns nil: the event is recorded without its personal
// values, which nothing may hold any more.
func (l *Ledger) keyFor(ctx context.Context, p string) (*pii.SubjectKey, error) {
	if p == "" {
		return nil, nil
	}
	// A subject the ledger says is erased never gets a key again, even if
	// its key entry is gone from the store.
	if s := l.view.Subject(p); s != nil && (s.Erased || s.KeyDestroyed) {
		return nil, nil
	}
	k, err := l.keyring.Get(ctx, p, true)
	if errors.Is(err, pii.ErrErased) {
		return nil, nil
	}
	if err != nil {
		return nil, keyError(err)
	}
	return k, nil
}

// sealSubject stores the subject identifier itself, sealed under the
// subject's key, the first time the subject is seen by this process.
func (l *Ledger) sealSubject(ctx context.Context, k *pii.SubjectKey, p, subject string) error {
	ref := pii.Ref(p, "subject")
	if k.SubjectSealed() {
		return nil
	}
	sealed, err := k.Seal(ref, pii.Values{"subject": marshalJSON(subject)})
	if err != nil {
		return err
	}
	if err := l.sealed.Put(ctx, ref, sealed); err != nil {
		return fmt.Errorf("%w: store sealed subject: %v", ErrUnavailable, err)
	}
	k.MarkSubjectSealed()
	return nil
}

func (l *Ledger) appendDenial(ctx context.Context, e *event.Event, p, key, mac string, parts *pii.Parts, st policy.SubjectState, dec policy.Decision) (*Receipt, error) {
	attempted := marshalJSON(parts.PolicyData())
	digestInput := marshalJSON(struct {
		Type, Source, ID, Time, Subject string
		Data                            json.RawMessage
	}{e.Type, e.Source, e.ID, record.FormatTime(e.Time), p, attempted})
	sum := sha256.Sum256(digestInput)
	// A re-send of the same denied event, in the same subject state, under
	// the same policy revision and notices, for the same reasons, is the
	// same denial: its id (and Nats-Msg-Id) is derived from all of these,
	// and an id already on the ledger is answered with its first record
	// (docs/policies.md, "Denials and re-sends").
	id := denialID(key, mac, st.StateSeq, len(l.view.Notices().Versions), dec)
	if ent, ok, err := l.view.Lookup(state.IDKey(InternalSource, id)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	} else if ok {
		return &Receipt{Seq: ent.Seq, Decision: dec}, nil
	}
	last := st.LastSeq
	rec := &record.Record{
		Type: record.TypeDenied, ID: id, Source: InternalSource, Time: record.FormatTime(l.now()), Subject: p,
		RecordedAt: record.FormatTime(l.now()),
		Data: marshalJSON(record.Denied{
			Digest: "sha256:" + base64.StdEncoding.EncodeToString(sum[:]), Type: e.Type, Source: e.Source, ID: e.ID,
			Time: record.FormatTime(e.Time), Attempted: attempted, Decision: dec,
		}),
	}
	rc, err := l.publish(ctx, p, rec, state.IDKey(InternalSource, id), last)
	if err != nil {
		return nil, err
	}
	rc.Decision = dec
	// A denial re-sent in the same state is reported as that denial.
	rc.Duplicate = false
	return rc, nil
}

func denialID(key, mac string, stateSeq uint64, notices int, dec policy.Decision) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%d\x00%s", key, mac, stateSeq, notices, dec.PolicyRevision)
	for _, r := range dec.Reasons {
		fmt.Fprintf(h, "\x00%s", r.Code)
	}
	return "denied-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// publish appends one record, conditional on the subject's last sequence,
// and folds it into the subject's state before returning.
func (l *Ledger) publish(ctx context.Context, p string, rec *record.Record, msgID string, last uint64) (*Receipt, error) {
	body, err := record.Marshal(rec)
	if err != nil {
		return nil, err
	}
	ack, err := l.commit(ctx, appendMsg(p, rec.Type, body, msgID, last))
	if err != nil {
		if isStale(err) {
			return nil, errStale
		}
		return nil, unavailable(err)
	}
	leaf := tlog.RecordHash(body)
	rc := &Receipt{Seq: ack.Sequence, LeafHash: base64.StdEncoding.EncodeToString(leaf[:]), Duplicate: ack.Duplicate}
	if rec.Decision != nil {
		rc.Decision = *rec.Decision
	}
	if !ack.Duplicate {
		if err := l.view.ApplyLocal(ack.Sequence, p, rec); err != nil {
			return nil, err
		}
	}
	return rc, nil
}

// AppendInternal appends a record Custos writes itself (policy
// activations, key destructions, retention expiries). id makes it
// idempotent.
func (l *Ledger) AppendInternal(ctx context.Context, p, typ, id string, data any) (*Receipt, error) {
	if err := l.enter(); err != nil {
		return nil, err
	}
	defer l.inflight.Done()
	unlock := l.lockFor(p)
	defer unlock()
	return l.appendInternal(ctx, p, typ, id, data)
}

// appendInternal is AppendInternal for callers that hold the subject lock.
func (l *Ledger) appendInternal(ctx context.Context, p, typ, id string, data any) (*Receipt, error) {
	key := state.IDKey(InternalSource, id)
	ent, ok, err := l.view.Lookup(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if ok {
		return &Receipt{Seq: ent.Seq, Duplicate: true}, nil
	}
	for round := 0; round < maxDecideRounds; round++ {
		var last uint64
		if p != "" {
			last = l.view.PolicySubject(p, l.now()).LastSeq
		}
		now := record.FormatTime(l.now())
		rec := &record.Record{Type: typ, ID: id, Source: InternalSource, Time: now, Subject: p, RecordedAt: now, Data: marshalJSON(data)}
		rc, err := l.publish(ctx, p, rec, key, last)
		if errors.Is(err, errStale) {
			if err := l.catchUp(ctx, p); err != nil {
				return nil, err
			}
			continue
		}
		return rc, err
	}
	return nil, fmt.Errorf("%w: subject kept changing", ErrUnavailable)
}

func keyError(err error) error {
	if errors.Is(err, keys.ErrUnavailable) {
		return fmt.Errorf("%w: key service: %v", ErrUnavailable, err)
	}
	if natsTransient(err) {
		return fmt.Errorf("%w: subject key store: %v", ErrUnavailable, err)
	}
	return err
}

// natsTransient reports a NATS failure that a retry can outlive: on a
// cluster, the subject-key bucket's stream has no leader for a moment
// after its leader's server goes away, and requests to it time out. The
// caller gets 503 and re-sends; a key entry created by the timed-out
// attempt is found and used by the retry, and nothing was appended.
func natsTransient(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionReconnecting) ||
		(errors.As(err, &apiErr) && apiErr.Code == 503)
}
