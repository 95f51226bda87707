package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/mod/sumdb/tlog"

	"custos.dev/ledger/checkpoint"
	"custos.dev/ledger/keys"
	"custos.dev/ledger/record"
)

// follow reads LEDGER in sequence order from the start and folds every
// record into the tree and the view. A gap or an unreadable record stops
// it: the ledger then refuses appends rather than build on a broken log.
func (l *Ledger) follow(ctx context.Context) {
	defer l.done.Done()
	cons, err := l.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		if ctx.Err() == nil {
			l.fail(fmt.Errorf("%w: follower: %v", ErrUnavailable, err))
		}
		return
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2048))
	if err != nil {
		l.fail(fmt.Errorf("%w: follower: %v", ErrUnavailable, err))
		return
	}
	go func() { <-ctx.Done(); it.Stop() }()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			l.log.Warn("follower: next message", "err", err)
			continue
		}
		md, err := msg.Metadata()
		if err != nil {
			l.fail(fmt.Errorf("%w: message metadata: %v", ErrIntegrity, err))
			return
		}
		seq := md.Sequence.Stream
		if want := uint64(l.tree.Size()) + 1; seq != want {
			l.fail(fmt.Errorf("%w: expected sequence %d, stream delivered %d", ErrIntegrity, want, seq))
			return
		}
		// Nothing enters the tree that is not a record stored where its
		// body puts it.
		r, err := record.Unmarshal(msg.Data())
		if err != nil {
			l.fail(fmt.Errorf("%w: sequence %d: %v", ErrIntegrity, seq, err))
			return
		}
		if err := checkPlaced(seq, msg.Subject(), msg.Headers().Get(jetstream.MsgIDHeader), placement{Type: r.Type, Subject: r.Subject, Source: r.Source, ID: r.ID}); err != nil {
			l.fail(err)
			return
		}
		if _, err := l.tree.Append(msg.Data()); err != nil {
			l.fail(fmt.Errorf("%w: tree: %v", ErrIntegrity, err))
			return
		}
		// The body, which the tree covers, says whose record this is.
		p := r.Subject
		// The subject's copy is written before the view marks seq applied,
		// so a reader that waited for seq finds it there.
		if p != "" {
			if err := l.subjects.Add(p, seq, msg.Data()); err != nil {
				l.fail(fmt.Errorf("%w: sequence %d: %v", ErrUnavailable, seq, err))
				return
			}
		}
		if err := l.view.Apply(seq, p, r); err != nil {
			l.fail(fmt.Errorf("%w: sequence %d: %v", ErrIntegrity, seq, err))
			return
		}
		l.metrics.followed.Set(float64(seq))
	}
}

// loadLatestCheckpoint reads the last signed checkpoint and checks that the
// tree replayed from the stream agrees with it: a ledger whose stream lost
// or changed acknowledged events must not sign anything again.
func (l *Ledger) loadLatestCheckpoint(ctx context.Context) error {
	msg, err := l.cps.GetLastMsgForSubject(ctx, CheckpointSubject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: last checkpoint: %v", ErrUnavailable, err)
	}
	cp, err := checkpoint.Open(msg.Data, l.signer.VerifierKey())
	if err != nil {
		return fmt.Errorf("%w: last checkpoint (seq %d): %v", ErrIntegrity, msg.Sequence, err)
	}
	if cp.Size > l.tree.Size() {
		return fmt.Errorf("%w: last checkpoint covers %d events but the stream has %d", ErrIntegrity, cp.Size, l.tree.Size())
	}
	root, err := l.tree.Root(cp.Size)
	if err != nil {
		return err
	}
	if root != cp.Root {
		return fmt.Errorf("%w: stream does not match the last checkpoint at size %d", ErrIntegrity, cp.Size)
	}
	l.setLatest(cp, msg.Sequence)
	return nil
}

func (l *Ledger) setLatest(cp *checkpoint.Checkpoint, _ uint64) {
	l.cpMu.Lock()
	l.latest = cp
	l.cpErr = nil
	l.cpMu.Unlock()
	l.metrics.checkpointSize.Set(float64(cp.Size))
}

// Latest is the newest signed checkpoint, or nil before the first.
func (l *Ledger) Latest() *checkpoint.Checkpoint {
	l.cpMu.RLock()
	defer l.cpMu.RUnlock()
	return l.latest
}

// CheckpointError is the last signing failure, nil when signing works.
func (l *Ledger) CheckpointError() error {
	l.cpMu.RLock()
	defer l.cpMu.RUnlock()
	return l.cpErr
}

// integrate signs a checkpoint every interval when the tree has grown.
// Checkpoints are appended with an expected last sequence, so when several
// processes integrate, each size is signed at most once and never forked.
func (l *Ledger) integrate(ctx context.Context) {
	defer l.done.Done()
	t := time.NewTicker(l.opts.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		leader := l.lease.held(ctx)
		l.leader.Store(leader)
		if leader {
			l.metrics.integrator.Set(1)
		} else {
			l.metrics.integrator.Set(0)
			continue
		}
		if err := l.signOnce(ctx); err != nil && ctx.Err() == nil {
			l.cpMu.Lock()
			l.cpErr = err
			l.cpMu.Unlock()
			l.metrics.checkpointFailures.Inc()
			l.log.Warn("checkpoint not signed; will retry", "err", err)
		}
	}
}

// IsIntegrator reports whether this process currently holds the
// integrator lease and signs checkpoints.
func (l *Ledger) IsIntegrator() bool { return l.leader.Load() }

// SignNow signs a checkpoint of the current tree if it grew; tests and
// shutdown use it to avoid waiting for the ticker.
func (l *Ledger) SignNow(ctx context.Context) error { return l.signOnce(ctx) }

func (l *Ledger) signOnce(ctx context.Context) error {
	l.signMu.Lock()
	defer l.signMu.Unlock()
	for attempt := 0; ; attempt++ {
		lost, err := l.signRound(ctx)
		if !lost || attempt == 2 {
			return err
		}
	}
}

// signRound signs the current tree once. lost reports that another
// integrator appended a checkpoint first; the caller then reads it and
// tries again.
func (l *Ledger) signRound(ctx context.Context) (lost bool, _ error) {
	if err := l.err(); err != nil {
		return false, err
	}
	// Pick up checkpoints another integrator signed.
	last, err := l.cps.GetLastMsgForSubject(ctx, CheckpointSubject)
	var lastSeq uint64
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
	case err != nil:
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	default:
		lastSeq = last.Sequence
		cur := l.Latest()
		if cur == nil || string(cur.Note) != string(last.Data) {
			cp, err := checkpoint.Open(last.Data, l.signer.VerifierKey())
			if err != nil {
				return false, fmt.Errorf("%w: checkpoint seq %d: %v", ErrIntegrity, last.Sequence, err)
			}
			if err := l.waitTree(ctx, cp.Size); err != nil {
				return false, err
			}
			if root, _ := l.tree.Root(cp.Size); root != cp.Root {
				l.fail(fmt.Errorf("%w: checkpoint at size %d does not match the stream", ErrIntegrity, cp.Size))
				return false, l.err()
			}
			l.setLatest(cp, last.Sequence)
		}
	}
	size := l.tree.Size()
	prev := l.Latest()
	if size == 0 || (prev != nil && prev.Size >= size) {
		return false, nil
	}
	root, err := l.tree.Root(size)
	if err != nil {
		return false, err
	}
	if prev != nil {
		// Prove to ourselves that the new tree extends the signed one.
		p, err := l.tree.ConsistencyProof(prev.Size, size)
		if err != nil {
			return false, err
		}
		if err := tlog.CheckTree(p, size, root, prev.Size, prev.Root); err != nil {
			l.fail(fmt.Errorf("%w: tree of size %d is not consistent with checkpoint %d", ErrIntegrity, size, prev.Size))
			return false, l.err()
		}
	}
	note, err := checkpoint.Sign(l.signer.Origin(), size, root, l.signer)
	if err != nil {
		if errors.Is(err, keys.ErrUnavailable) {
			return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return false, err
	}
	ack, err := l.js.Publish(ctx, CheckpointSubject, note, jetstream.WithExpectLastSequence(lastSeq), jetstream.WithExpectStream(CheckpointStreamName))
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			return true, nil
		}
		return false, fmt.Errorf("%w: publish checkpoint: %v", ErrUnavailable, err)
	}
	l.setLatest(&checkpoint.Checkpoint{Origin: l.signer.Origin(), Size: size, Root: root, Note: note}, ack.Sequence)
	l.metrics.checkpoints.Inc()
	return false, nil
}

func (l *Ledger) waitTree(ctx context.Context, size int64) error {
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return l.waitApplied(wctx, uint64(size))
}

// GetRecord reads one stored body by sequence.
func (l *Ledger) GetRecord(ctx context.Context, seq uint64) (subject string, body []byte, err error) {
	m, err := l.stream.GetMsg(ctx, seq)
	if err != nil {
		return "", nil, err
	}
	return m.Subject, m.Data, nil
}

func marshalJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("ledger: marshal %T: %v", v, err))
	}
	return b
}
