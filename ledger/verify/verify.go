// Package verify checks a Custos ledger without trusting Custos: it
// recomputes the RFC 6962 tree from the stored bodies (with
// transparency-dev/merkle's compact ranges, independent of the tlog code
// that builds Custos's own tree), opens every checkpoint with the note
// verifier key, and compares each signed root with the recomputed one.
//
// The same algorithm runs over the HTTP API, straight over NATS with the
// auditor's read-only credentials, and over an audit bundle.
package verify

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"custos.dev/ledger/checkpoint"
	"custos.dev/ledger/record"
)

// Source yields what is to be verified.
type Source interface {
	// Events calls fn for every stored body in stream-sequence order,
	// starting at sequence first.
	Events(ctx context.Context, fn func(seq uint64, body []byte) error) error
	// Checkpoints calls fn for every signed checkpoint note, oldest first.
	Checkpoints(ctx context.Context, fn func(note []byte) error) error
}

// Options tune a run.
type Options struct {
	// VerifierKey is the note verifier key the checkpoints must carry.
	VerifierKey string
	// First is the sequence the events start at (an audit bundle may
	// start mid-log with a compact range of the tree before it); 1 by default.
	First uint64
	// Prefix is the compact range of leaves [0, First-1), base64 hashes.
	Prefix [][]byte
	// MaxUnsignedAge is how old the oldest event not covered by a
	// checkpoint may be (by its recorded_at) before that is a failure;
	// 0 disables the check.
	MaxUnsignedAge time.Duration
	Now            func() time.Time
	// Progress, when set, is called every so often with events done.
	Progress func(events int64)
}

// Report is the outcome. OK is false exactly when Problem is set.
type Report struct {
	OK               bool    `json:"ok"`
	Events           int64   `json:"events"`
	Checkpoints      int     `json:"checkpoints"`
	TreeSize         int64   `json:"tree_size"`
	Root             string  `json:"root"`
	LatestCheckpoint int64   `json:"latest_checkpoint_size"`
	UnsignedTail     int64   `json:"unsigned_tail"`
	FirstBadSeq      uint64  `json:"first_bad_seq,omitempty"`
	LastGoodSeq      uint64  `json:"last_good_seq,omitempty"`
	Problem          string  `json:"problem,omitempty"`
	Seconds          float64 `json:"seconds"`
	EventsPerSecond  float64 `json:"events_per_second"`
}

// ErrSource reports a failure to read the source (not an integrity
// failure): callers exit 2 on it.
var ErrSource = errors.New("cannot read the ledger")

type problem struct {
	seq  uint64
	good uint64
	msg  string
}

func (p *problem) Error() string { return p.msg }

// BadRecord is what a Source returns for a record it holds but must not
// hand on as part of the ledger: one whose storage disagrees with its body
// (a Source that knows where a record is stored checks that it is where its
// body says). Run reports it as the problem at Seq.
type BadRecord struct {
	Seq     uint64
	Problem string // names the sequence
}

func (b *BadRecord) Error() string { return b.Problem }

// Run verifies src.
func Run(ctx context.Context, src Source, o Options) (*Report, error) {
	if o.First == 0 {
		o.First = 1
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	started := time.Now()
	rep := &Report{}
	var cps []*checkpoint.Checkpoint
	err := src.Checkpoints(ctx, func(note []byte) error {
		cp, err := checkpoint.Open(note, o.VerifierKey)
		if err != nil {
			return &problem{msg: fmt.Sprintf("checkpoint #%d: %v", len(cps)+1, err)}
		}
		if n := len(cps); n > 0 && cp.Size < cps[n-1].Size {
			return &problem{msg: fmt.Sprintf("checkpoint #%d: tree size %d is smaller than the previous checkpoint's %d", n+1, cp.Size, cps[n-1].Size)}
		}
		cps = append(cps, cp)
		return nil
	})
	if done, err := finish(rep, err); done {
		return rep, err
	}
	rep.Checkpoints = len(cps)
	if len(cps) > 0 {
		rep.LatestCheckpoint = cps[len(cps)-1].Size
	}

	rf := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	rng, err := rf.NewRange(0, o.First-1, o.Prefix)
	if err != nil {
		return nil, fmt.Errorf("%w: tree prefix: %v", ErrSource, err)
	}
	next := o.First
	ci := 0
	// Skip checkpoints that end before the range we hold.
	for ci < len(cps) && cps[ci].Size < int64(o.First-1) {
		ci++
	}
	var firstUnsigned time.Time
	check := func() error {
		for ci < len(cps) && cps[ci].Size == int64(rng.End()) {
			root, err := rng.GetRootHash(nil)
			if err != nil {
				return err
			}
			if rng.End() == 0 {
				// compact gives no root for no leaves; RFC 6962's is SHA-256("").
				root = rfc6962.DefaultHasher.EmptyRoot()
			}
			if !bytes.Equal(root, cps[ci].Root[:]) {
				from := uint64(o.First)
				if ci > 0 && cps[ci-1].Size >= int64(o.First-1) {
					from = uint64(cps[ci-1].Size) + 1
				}
				msg := fmt.Sprintf("events %d..%d do not match the signed checkpoint at tree size %d: an event in that range was altered, removed or reordered", from, cps[ci].Size, cps[ci].Size)
				if from == uint64(cps[ci].Size) {
					msg = fmt.Sprintf("event %d does not match the signed checkpoint at tree size %d: it was altered", from, cps[ci].Size)
				}
				return &problem{seq: from, good: from - 1, msg: msg}
			}
			ci++
		}
		return nil
	}
	if err := check(); err != nil {
		finish(rep, err)
		return rep, nil
	}
	// Reading and hashing overlap: the source's goroutine only queues
	// bodies, this one hashes them, so on two cores verification runs
	// near the speed of a raw read.
	type item struct {
		seq  uint64
		body []byte
	}
	queue := make(chan []item, 8)
	readErr := make(chan error, 1)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(queue)
		var batch []item
		err := src.Events(rctx, func(seq uint64, body []byte) error {
			batch = append(batch, item{seq, body})
			if len(batch) == 256 {
				select {
				case queue <- batch:
				case <-rctx.Done():
					return rctx.Err()
				}
				batch = nil
			}
			return nil
		})
		if err == nil && len(batch) > 0 {
			select {
			case queue <- batch:
			case <-rctx.Done():
			}
		}
		readErr <- err
	}()
	hashOne := func(seq uint64, body []byte) error {
		if seq != next {
			if seq < next {
				return &problem{seq: seq, good: next - 1, msg: fmt.Sprintf("sequence %d appears twice or out of order", seq)}
			}
			return &problem{seq: next, good: next - 1, msg: fmt.Sprintf("sequence %d is missing (next present is %d)", next, seq)}
		}
		// Integrity rests on the hashes alone; bodies are parsed only
		// where their content matters (the first event no checkpoint
		// covers).
		if err := rng.Append(rfc6962.DefaultHasher.HashLeaf(body), nil); err != nil {
			return err
		}
		if ci >= len(cps) && firstUnsigned.IsZero() {
			r, err := record.Unmarshal(body)
			if err != nil {
				return &problem{seq: seq, good: seq - 1, msg: fmt.Sprintf("sequence %d is not a valid record: %v", seq, err)}
			}
			firstUnsigned, _ = time.Parse(time.RFC3339Nano, r.RecordedAt)
		}
		next++
		rep.Events++
		if o.Progress != nil && rep.Events%4096 == 0 {
			o.Progress(rep.Events)
		}
		return check()
	}
	for batch := range queue {
		for _, it := range batch {
			if err = hashOne(it.seq, it.body); err != nil {
				break
			}
		}
		if err != nil {
			cancel()
			for range queue {
			}
			break
		}
	}
	if rerr := <-readErr; err == nil && rerr != nil {
		err = rerr
	}
	if done, err := finish(rep, err); done {
		return rep, err
	}
	rep.TreeSize = int64(rng.End())
	if root, err := rng.GetRootHash(nil); err == nil {
		rep.Root = base64.StdEncoding.EncodeToString(root)
	}
	if ci < len(cps) {
		return fail(rep, &problem{seq: next, good: next - 1, msg: fmt.Sprintf("the ledger ends at sequence %d but a signed checkpoint covers %d events: sequences %d..%d are missing", next-1, cps[ci].Size, next, cps[ci].Size)}), nil
	}
	rep.UnsignedTail = rep.TreeSize - rep.LatestCheckpoint
	if rep.UnsignedTail > 0 && o.MaxUnsignedAge > 0 && !firstUnsigned.IsZero() && o.Now().Sub(firstUnsigned) > o.MaxUnsignedAge {
		seq := uint64(rep.LatestCheckpoint) + 1
		return fail(rep, &problem{seq: seq, good: seq - 1, msg: fmt.Sprintf("events from sequence %d were recorded %s ago and no checkpoint covers them", seq, o.Now().Sub(firstUnsigned).Round(time.Second))}), nil
	}
	rep.OK = true
	rep.LastGoodSeq = next - 1
	rep.Seconds = time.Since(started).Seconds()
	if rep.Seconds > 0 {
		rep.EventsPerSecond = float64(rep.Events) / rep.Seconds
	}
	if o.Progress != nil {
		o.Progress(rep.Events)
	}
	return rep, nil
}

func finish(rep *Report, err error) (bool, error) {
	if err == nil {
		return false, nil
	}
	var p *problem
	if errors.As(err, &p) {
		fail(rep, p)
		return true, nil
	}
	var b *BadRecord
	if errors.As(err, &b) {
		fail(rep, &problem{seq: b.Seq, good: b.Seq - 1, msg: b.Problem})
		return true, nil
	}
	return true, fmt.Errorf("%w: %v", ErrSource, err)
}

func fail(rep *Report, p *problem) *Report {
	rep.OK = false
	rep.Problem = p.msg
	rep.FirstBadSeq = p.seq
	rep.LastGoodSeq = p.good
	return rep
}
