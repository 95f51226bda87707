package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"custos.dev/ledger/event"
	"custos.dev/ledger/record"
	"custos.dev/ledger/verify"
)

// Reader reads the ledger streams and nothing else: it needs only the
// auditor's NATS permissions, so verifiers can use it without Custos.
type Reader struct {
	js jetstream.JetStream
}

// NewReader reads through js.
func NewReader(js jetstream.JetStream) *Reader { return &Reader{js: js} }

// Filter selects records for replay. Zero fields do not filter.
type Filter struct {
	Pseudonym string    // one data subject
	Type      string    // one event type
	Since     time.Time // event time at or after
	Until     time.Time // event time before
	FromSeq   uint64
	ToSeq     uint64
}

// Entry is one stored record.
type Entry struct {
	Seq     uint64
	Subject string // NATS subject
	MsgID   string // its Nats-Msg-Id header
	Body    []byte // exactly as stored
	// Record is the parsed body when the replay had to parse it (time
	// filters); otherwise nil: call Parse.
	Record *record.Record
}

// Parse returns the parsed record.
func (e *Entry) Parse() (*record.Record, error) {
	if e.Record != nil {
		return e.Record, nil
	}
	r, err := record.Unmarshal(e.Body)
	if err != nil {
		return nil, err
	}
	e.Record = r
	return r, nil
}

// natsSubjects are the consumer's filter subjects. A data subject's records
// are selected by the literal subject of every record type rather than by
// the wildcard ledger.s.<pseudonym>.>: the server then finds them through
// its per-subject index instead of matching a wildcard against every
// subject of every block, which keeps a subject's replay fast however
// large the ledger grows.
func (f Filter) natsSubjects() []string {
	switch {
	case f.Pseudonym != "" && f.Type != "":
		return []string{SubjectFor(f.Pseudonym, f.Type)}
	case f.Pseudonym != "":
		out := make([]string, 0, len(recordTypes))
		for _, t := range recordTypes {
			out = append(out, SubjectFor(f.Pseudonym, t))
		}
		return out
	case f.Type != "":
		return []string{TypeFilter(f.Type)}
	}
	return nil
}

// recordTypes is every type a data subject's record can have.
var recordTypes = append(event.Types(), record.TypeDenied, record.TypePolicyActivated, record.TypeKeyDestroyed, record.TypeRetentionExpired)

// Replay calls fn for every record matching f, in sequence order, up to the
// stream's last sequence when Replay began. A record stored where its body
// does not put it (another NATS subject or deduplication id, or a body that
// is no record) ends the replay with a *MisplacedError naming it.
func (r *Reader) Replay(ctx context.Context, f Filter, fn func(Entry) error) error {
	s, err := r.js.Stream(ctx, StreamName)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return replayStream(ctx, s, f, func(e Entry) error {
		if err := checkPlacement(e.Seq, e.Subject, e.MsgID, e.Body); err != nil {
			return err
		}
		return fn(e)
	})
}

// Checkpoints calls fn for every stored checkpoint note in order.
func (r *Reader) Checkpoints(ctx context.Context, fn func(seq uint64, note []byte) error) error {
	s, err := r.js.Stream(ctx, CheckpointStreamName)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return replayStream(ctx, s, Filter{}, func(e Entry) error { return fn(e.Seq, e.Body) })
}

// LastSeq is the stream's last sequence.
func (r *Reader) LastSeq(ctx context.Context) (uint64, error) {
	s, err := r.js.Stream(ctx, StreamName)
	if err != nil {
		return 0, err
	}
	return s.CachedInfo().State.LastSeq, nil
}

// replayInactive is how long an abandoned replay's consumer outlives it.
const replayInactive = 5 * time.Second

func replayStream(ctx context.Context, s jetstream.Stream, f Filter, fn func(Entry) error) error {
	// The server drops the consumer soon after the replay stops pulling,
	// instead of keeping it (and its state) for the default five minutes.
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy, InactiveThreshold: replayInactive}
	cfg.FilterSubjects = f.natsSubjects()
	if f.FromSeq > 1 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, f.FromSeq
	}
	cons, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	pending := info.NumPending
	if pending == 0 {
		return nil
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	// NATS may count a message it can no longer deliver (a record whose
	// checksum failed after a restart) in its pending and stream counts,
	// so the replay also ends at the stream's last sequence.
	last := s.CachedInfo().State.LastSeq
	done := false
	for ; pending > 0 && !done; pending-- {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		seq := md.Sequence.Stream
		done = md.NumPending == 0 || seq >= last
		if f.ToSeq > 0 && seq > f.ToSeq {
			return nil
		}
		e := Entry{Seq: seq, Subject: msg.Subject(), MsgID: msg.Headers().Get(jetstream.MsgIDHeader), Body: msg.Data()}
		if !f.Since.IsZero() || !f.Until.IsZero() {
			if rec, err := e.Parse(); err == nil {
				if t := rec.EventTime(); (!f.Since.IsZero() && t.Before(f.Since)) || (!f.Until.IsZero() && !t.Before(f.Until)) {
					continue
				}
			}
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// Source adapts the reader to verify.Source.
func (r *Reader) Source() verify.Source { return readerSource{r} }

type readerSource struct{ r *Reader }

func (s readerSource) Events(ctx context.Context, fn func(seq uint64, body []byte) error) error {
	err := s.r.Replay(ctx, Filter{}, func(e Entry) error { return fn(e.Seq, e.Body) })
	var m *MisplacedError
	if errors.As(err, &m) {
		return &verify.BadRecord{Seq: m.Seq, Problem: m.Problem}
	}
	return err
}

func (s readerSource) Checkpoints(ctx context.Context, fn func(note []byte) error) error {
	return s.r.Checkpoints(ctx, func(_ uint64, note []byte) error { return fn(note) })
}
