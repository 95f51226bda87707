package ledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// Group commit.
//
// With SyncAlways the server fsyncs every message it stores, so appends
// published one by one are bounded by the disk's fsync rate. Appends that
// arrive while a commit is in flight are instead gathered into one JetStream
// atomic batch (server 2.12+): the server stores the whole batch and fsyncs
// once before it acknowledges, so many events share one fsync and nothing
// is acknowledged before it is durable.
//
// A batch is all-or-nothing: if any message in it fails its checks (a stale
// expected subject sequence, a duplicate id), the server refuses the batch,
// and the committer publishes that batch's messages one by one so that each
// append gets its own outcome. Two messages of the same data subject are
// never in one batch, because an append holds its subject's lock until its
// message is acknowledged.

// maxBatch bounds a batch; the server's own limit is larger.
const maxBatch = 256

type commitReq struct {
	ctx  context.Context
	msg  *nats.Msg
	done chan commitRes
}

type commitRes struct {
	ack *jetstream.PubAck
	err error
}

// commit publishes msg through the group committer and waits for its ack.
func (l *Ledger) commit(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
	req := commitReq{ctx: ctx, msg: msg, done: make(chan commitRes, 1)}
	select {
	case l.commits <- req:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// Once queued, the message may be committed even if ctx ends; wait for
	// the outcome so an acknowledged event is never reported as failed.
	res := <-req.done
	return res.ack, res.err
}

// committer gathers queued appends into batches until stop is closed.
func (l *Ledger) committer(stop <-chan struct{}) {
	defer close(l.committerDone)
	batch := make([]commitReq, 0, maxBatch)
	for {
		select {
		case <-stop:
			return
		case req := <-l.commits:
			batch = append(batch[:0], req)
		}
	gather:
		for len(batch) < maxBatch {
			select {
			case req := <-l.commits:
				batch = append(batch, req)
			default:
				break gather
			}
		}
		l.flush(batch)
	}
}

func (l *Ledger) flush(batch []commitReq) {
	l.metrics.batchSize.Observe(float64(len(batch)))
	if len(batch) == 1 || !l.batching.Load() {
		for _, r := range batch {
			ack, err := l.js.PublishMsg(r.ctx, r.msg)
			r.done <- commitRes{ack, err}
		}
		return
	}
	msgs := make([]*nats.Msg, len(batch))
	for i, r := range batch {
		// PublishMsgBatch adds batch headers; keep the original clean for
		// the one-by-one fallback.
		m := nats.NewMsg(r.msg.Subject)
		m.Data = r.msg.Data
		for k, v := range r.msg.Header {
			m.Header[k] = append([]string(nil), v...)
		}
		msgs[i] = m
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.commitTimeout)
	// No ack on the first message: a refused batch is reported at commit
	// anyway, and the extra round trip would cost more than the fsync saved.
	back, err := jetstreamext.PublishMsgBatch(ctx, l.js, msgs, jetstreamext.BatchFlowControl{AckFirst: false})
	cancel()
	if err == nil && back.BatchSize == uint64(len(batch)) {
		first := back.Sequence - back.BatchSize + 1
		for i, r := range batch {
			r.done <- commitRes{ack: &jetstream.PubAck{Stream: back.Stream, Sequence: first + uint64(i), Domain: back.Domain}}
		}
		return
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.ErrorCode(10174) {
		// Atomic publish disabled on this stream (an older stream):
		// stop trying batches.
		l.batching.Store(false)
		l.log.Warn("atomic batch publish is not enabled on the ledger stream; appends are committed one by one")
	}
	l.metrics.batchFallbacks.Inc()
	for _, r := range batch {
		ack, err := l.js.PublishMsg(r.ctx, r.msg)
		r.done <- commitRes{ack, err}
	}
}

// appendMsg builds the message of one record with its dedupe id and its
// subject's expected last sequence.
func appendMsg(p, typ string, body []byte, msgID string, last uint64) *nats.Msg {
	m := nats.NewMsg(SubjectFor(p, typ))
	m.Data = body
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	m.Header.Set(jetstream.ExpectedStreamHeader, StreamName)
	if p != "" {
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(last, 10))
		m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, SubjectFilter(p))
	}
	return m
}

func isStale(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

func unavailable(err error) error { return fmt.Errorf("%w: append: %v", ErrUnavailable, err) }
