package ledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// Group commit.
//
// With SyncAlways the server fsyncs every message it stores, so appends
// published and acknowledged one at a time are bounded by the disk's fsync
// latency. The committer takes every append queued while earlier ones are in
// flight and commits them together, in one of two ways:
//
//   - many at once (atomicMin or more) as one JetStream atomic batch (server
//     2.12+): the server stores the whole batch and fsyncs once before it
//     acknowledges, so they share one fsync. The server stages each batch in
//     a store of its own first, a fixed cost that only a large batch repays.
//   - fewer as pipelined asynchronous publishes: the server still fsyncs each
//     one, but never waits for the next, and stages nothing.
//
// Either way nothing is acknowledged before it is durable. A batch is
// all-or-nothing: if any message in it fails its checks (a stale expected
// subject sequence, a duplicate id), the server refuses the batch, and the
// committer publishes that batch's messages one by one so that each append
// gets its own outcome. Groups in flight together never hold two messages of
// one data subject, because an append holds its subject's lock until its
// message is acknowledged, so no outcome depends on the order in which the
// server stores them.

const (
	// MaxCommitGroup bounds a group, and so the appends that share one
	// fsync; the server's own limit is larger.
	MaxCommitGroup = 256
	// atomicMin is the smallest group sent as an atomic batch. Measured on
	// 2 vCPUs (docs/performance.md), a batch of 16 is no faster than 16
	// pipelined publishes, and the staging costs CPU that the appends need.
	atomicMin = 48
	// maxInFlight groups may await their acks at once.
	maxInFlight = 2
)

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

// committer gathers queued appends into groups until stop is closed.
func (l *Ledger) committer(stop <-chan struct{}) {
	var flushing sync.WaitGroup
	defer close(l.committerDone)
	defer flushing.Wait()
	done := make(chan struct{}, maxInFlight)
	inFlight := 0
	for {
		var batch []commitReq
		for len(batch) == 0 {
			select {
			case <-stop:
				return
			case <-done:
				inFlight--
			case req := <-l.commits:
				batch = append(make([]commitReq, 0, 32), req)
			}
		}
		// Gather what is queued; while every slot is taken, keep gathering
		// until one frees.
		for {
		gather:
			for len(batch) < MaxCommitGroup {
				select {
				case req := <-l.commits:
					batch = append(batch, req)
				default:
					break gather
				}
			}
			if inFlight < maxInFlight {
				break
			}
			if len(batch) >= MaxCommitGroup {
				<-done
				inFlight--
				continue
			}
			select {
			case <-done:
				inFlight--
			case req := <-l.commits:
				batch = append(batch, req)
			}
		}
		inFlight++
		flushing.Add(1)
		go func() {
			defer flushing.Done()
			l.flush(batch)
			done <- struct{}{}
		}()
	}
}

func (l *Ledger) flush(batch []commitReq) {
	l.metrics.batchSize.Observe(float64(len(batch)))
	if len(batch) < atomicMin || !l.batching.Load() {
		l.publishEach(batch)
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
	l.publishEach(batch)
}

// publishEach publishes every message of batch without waiting for the one
// before, then hands each its own ack or error.
func (l *Ledger) publishEach(batch []commitReq) {
	futures := make([]jetstream.PubAckFuture, len(batch))
	for i, r := range batch {
		f, err := l.publishAsync(r.msg)
		if err != nil {
			r.done <- commitRes{err: err}
			continue
		}
		futures[i] = f
	}
	// One deadline for the group; its channel stays closed once it has
	// passed, so every later wait ends at once too.
	wait, cancel := context.WithTimeout(context.Background(), l.commitTimeout)
	defer cancel()
	for i, r := range batch {
		if futures[i] == nil {
			continue
		}
		select {
		case ack := <-futures[i].Ok():
			r.done <- commitRes{ack: ack}
		case err := <-futures[i].Err():
			r.done <- commitRes{err: err}
		case <-wait.Done():
			// The message may still be stored; a re-send of the event is
			// answered from the id index with the original receipt.
			r.done <- commitRes{err: fmt.Errorf("no ack within %s: %w", l.commitTimeout, context.DeadlineExceeded)}
		}
	}
}

// publishAsync publishes msg, waiting out the client's back-pressure: with
// SyncAlways acks arrive at the disk's pace, and a full window of pending
// publishes (ErrTooManyStalledMsgs) means wait, not fail.
func (l *Ledger) publishAsync(msg *nats.Msg) (jetstream.PubAckFuture, error) {
	deadline := time.Now().Add(l.commitTimeout)
	for {
		f, err := l.js.PublishMsgAsync(msg)
		if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) || time.Now().After(deadline) {
			return f, err
		}
		select {
		case <-l.js.PublishAsyncComplete():
		case <-time.After(10 * time.Millisecond):
		}
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
