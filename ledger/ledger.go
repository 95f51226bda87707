// Package ledger is Custos's append-only privacy ledger on NATS JetStream.
//
// Every event a platform emits is validated (package event), decided by the
// active Rego policy (package policy) against the state projected from every
// event acknowledged before it (package state), stripped of personal values
// (package pii) and appended to the JetStream stream LEDGER. A denied event
// is not appended; a custos.decision.denied record is, in its place. An
// integrator follows the stream, keeps the RFC 6962 Merkle tree (package
// tree) and signs C2SP checkpoints with a Vault transit key (package
// checkpoint) into LEDGER_CHECKPOINTS.
//
// Open starts it; Close stops it. Append is safe for concurrent use.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"custos.dev/ledger/checkpoint"
	"custos.dev/ledger/index"
	"custos.dev/ledger/keys"
	"custos.dev/ledger/pii"
	"custos.dev/ledger/policy"
	"custos.dev/ledger/state"
	"custos.dev/ledger/tree"
)

// Sentinel errors of the append path; the HTTP layer maps each to a status.
var (
	// ErrConflict: the same source+id was recorded with different content.
	ErrConflict = errors.New("duplicate id with different content")
	// ErrUnavailable: a dependency (NATS, Vault) cannot serve the append.
	ErrUnavailable = errors.New("ledger unavailable")
	// ErrIntegrity: the stream is not what the ledger wrote.
	ErrIntegrity = errors.New("ledger integrity failure")
	// ErrClosed: the ledger is shutting down.
	ErrClosed = errors.New("ledger closed")
)

// DeniedError is returned when the policy blocked an event; Seq is the
// sequence of the recorded denial.
type DeniedError struct {
	Decision policy.Decision
	Seq      uint64
}

func (e *DeniedError) Error() string {
	if len(e.Decision.Reasons) > 0 {
		return "denied by policy: " + e.Decision.Reasons[0].Code
	}
	return "denied by policy"
}

// The defaults of Options, declared once: the command line and the app use
// them as their own.
const (
	DefaultOrigin             = "custos.local/ledger"
	DefaultCheckpointInterval = time.Second
	DefaultKeyCacheTTL        = 15 * time.Minute
)

// Options configure Open.
type Options struct {
	Conn   *nats.Conn
	Keys   *keys.Client
	Policy *policy.Engine
	// Origin is the checkpoint origin line, e.g. "custos.example/ledger".
	Origin string
	Stream StreamOptions
	// CheckpointInterval is how often the integrator signs a grown tree.
	CheckpointInterval time.Duration
	// KeyCacheTTL bounds how long subject keys are used without Vault
	// confirming them, i.e. how long appends survive a Vault outage.
	KeyCacheTTL time.Duration
	// IndexDir is a local directory for the per-event indexes (package
	// index), rebuilt from the stream at every Open; empty: a temporary
	// directory, removed by Close.
	IndexDir string
	// Integrate runs the checkpoint signer in this process.
	Integrate bool
	Clock     func() time.Time
	Logger    *slog.Logger
	Metrics   *Metrics
}

// Ledger is an open ledger.
type Ledger struct {
	opts      Options
	js        jetstream.JetStream
	stream    jetstream.Stream
	cps       jetstream.Stream
	keyring   *pii.Keyring
	sealed    *pii.Store
	pseud     *pii.Pseudonymizer
	signer    *keys.NoteSigner
	view      *state.View
	tree      *tree.Tree
	index     *index.DB
	subjects  *index.SubjectRecords
	tempIndex string // the index's directory when Open made it
	log       *slog.Logger
	now       func() time.Time
	metrics   *Metrics

	subjectLocks subjectLocks

	signMu sync.Mutex
	lease  *integratorLease
	leader atomic.Bool
	cpMu   sync.RWMutex
	latest *checkpoint.Checkpoint
	cpErr  error

	commits       chan commitReq
	committerDone chan struct{}
	stopCommitter chan struct{}
	commitTimeout time.Duration
	batching      atomic.Bool

	inflight sync.WaitGroup
	closeMu  sync.RWMutex
	closed   bool
	cancel   context.CancelFunc
	done     sync.WaitGroup
	failure  error
	failed   chan struct{}
	failMu   sync.Mutex
}

// Open connects the ledger to its streams, keys and policy, replays the
// stream to rebuild the in-memory state and tree, and starts the follower
// and (when asked) the integrator.
func Open(ctx context.Context, o Options) (*Ledger, error) {
	if o.Conn == nil || o.Keys == nil || o.Policy == nil {
		return nil, errors.New("ledger: Conn, Keys and Policy are required")
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Origin == "" {
		o.Origin = DefaultOrigin
	}
	if o.CheckpointInterval == 0 {
		o.CheckpointInterval = DefaultCheckpointInterval
	}
	if o.KeyCacheTTL == 0 {
		o.KeyCacheTTL = DefaultKeyCacheTTL
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	o.Stream = o.Stream.withDefaults()
	js, err := jetstream.New(o.Conn)
	if err != nil {
		return nil, err
	}
	l := &Ledger{opts: o, js: js, log: o.Logger, now: o.Clock, metrics: o.Metrics, failed: make(chan struct{}),
		commits: make(chan commitReq, MaxCommitGroup), subjectLocks: subjectLocks{m: map[string]*subjectLock{}}, committerDone: make(chan struct{}), stopCommitter: make(chan struct{}),
		commitTimeout: 30 * time.Second}
	l.batching.Store(true)
	if l.stream, l.cps, err = EnsureStreams(ctx, js, o.Stream); err != nil {
		return nil, err
	}
	dir := o.IndexDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "custos-index-"); err != nil {
			return nil, err
		}
		l.tempIndex = dir
	}
	if l.index, err = index.Open(dir, o.Logger); err != nil {
		l.removeTempIndex()
		return nil, err
	}
	l.tree, l.subjects = tree.NewOn(l.index.TreeHashes()), l.index.SubjectRecords()
	opened := false
	defer func() {
		if !opened {
			l.closeIndex()
		}
	}()
	keysKV, keysStream, err := l.erasableBucket(ctx, pii.KeysBucket)
	if err != nil {
		return nil, err
	}
	piiKV, piiStream, err := l.erasableBucket(ctx, pii.PIIBucket)
	if err != nil {
		return nil, err
	}
	meta, err := l.Bucket(ctx, pii.MetaBucket)
	if err != nil {
		return nil, err
	}
	pkey, err := pseudonymKey(ctx, o.Keys, meta)
	if err != nil {
		return nil, fmt.Errorf("pseudonymization key: %w", err)
	}
	l.pseud = pii.NewPseudonymizer(pkey)
	l.keyring = pii.NewKeyring(o.Keys, keysKV, keysStream, o.KeyCacheTTL, o.Clock)
	l.lease = newLease(meta, o.CheckpointInterval)
	l.sealed = pii.NewStore(piiKV, piiStream)
	if l.signer, err = keys.NewNoteSigner(ctx, o.Keys, checkpoint.DefaultKeyName, o.Origin); err != nil {
		return nil, err
	}
	l.view = state.NewViewOn(func(region string) bool {
		return l.opts.Policy.Active().IsStorageRegion(region)
	}, state.Stores{IDs: l.index.IDs(), Register: l.index.Register()})

	info, err := l.stream.Info(ctx, jetstream.WithDeletedDetails(true))
	if err != nil {
		return nil, err
	}
	// LEDGER denies deletes, so every sequence up to the last must be
	// stored. NATS marks what it could not recover from a damaged store
	// as deleted; waiting for those would never end.
	if st := info.State; st.Msgs < st.LastSeq {
		first := uint64(1)
		if st.Msgs > 0 && st.FirstSeq == 1 && len(st.Deleted) > 0 {
			first = slices.Min(st.Deleted)
		}
		return nil, fmt.Errorf("%w: LEDGER's last sequence is %d but it stores %d messages: sequences from %d are missing from the store", ErrIntegrity, st.LastSeq, st.Msgs, first)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go l.committer(l.stopCommitter)
	l.done.Add(1)
	go l.follow(runCtx)
	// abort stops what Open started, so a refused start leaks nothing.
	abort := func(err error) (*Ledger, error) {
		cancel()
		l.done.Wait()
		close(l.stopCommitter)
		<-l.committerDone
		return nil, err
	}
	started := time.Now()
	if err := l.waitApplied(ctx, info.State.LastSeq); err != nil {
		return abort(err)
	}
	l.log.Info("ledger replayed", "events", info.State.LastSeq, "took", time.Since(started).Round(time.Millisecond))
	if err := l.loadLatestCheckpoint(ctx); err != nil {
		return abort(err)
	}
	if o.Integrate {
		l.done.Add(1)
		go l.integrate(runCtx)
	}
	l.done.Add(1)
	go l.reconcileErasures(runCtx)
	opened = true
	return l, nil
}

// Bucket opens, creating it if needed, a KV bucket with the ledger's
// replicas and placement, so everything Custos stores stays where the
// ledger does.
func (l *Ledger) Bucket(ctx context.Context, name string) (jetstream.KeyValue, error) {
	kv, err := l.js.KeyValue(ctx, name)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = l.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: name, History: 1, Storage: jetstream.FileStorage,
			Replicas: l.opts.Stream.Replicas, Placement: l.opts.Stream.Placement,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = l.js.KeyValue(ctx, name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", name, err)
	}
	return kv, nil
}

// erasableBucket opens a bucket of personal values or keys through
// pii.OpenBucket, warning at every start while it still denies deletes.
func (l *Ledger) erasableBucket(ctx context.Context, name string) (jetstream.KeyValue, jetstream.Stream, error) {
	kv, s, err := pii.OpenBucket(ctx, l.js, name, l.opts.Stream.Replicas, l.opts.Stream.Placement)
	if errors.Is(err, pii.ErrLogicalErasure) {
		l.log.Warn("erasure is logical on this bucket: it was created denying deletes, so erased values stay in its block files until it is migrated (docs/keys.md)", "bucket", name)
		err = nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("bucket %s: %w", name, err)
	}
	return kv, s, nil
}

// waitApplied waits until the follower has applied seq, or has failed.
func (l *Ledger) waitApplied(ctx context.Context, seq uint64) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-l.failed:
			cancel()
		case <-wctx.Done():
		}
	}()
	err := l.view.WaitApplied(wctx, seq)
	if ferr := l.err(); ferr != nil {
		return ferr
	}
	return err
}

// WaitApplied waits until the follower has folded every sequence up to
// seq into the tree and the view.
func (l *Ledger) WaitApplied(ctx context.Context, seq uint64) error { return l.waitApplied(ctx, seq) }

func (l *Ledger) fail(err error) {
	l.failMu.Lock()
	if l.failure == nil {
		l.failure = err
		close(l.failed)
		l.log.Error("ledger stopped following the stream", "err", err)
	}
	l.failMu.Unlock()
}

func (l *Ledger) err() error {
	l.failMu.Lock()
	defer l.failMu.Unlock()
	return l.failure
}

// Close stops accepting appends, waits for those in flight, then stops the
// follower and integrator.
func (l *Ledger) Close(ctx context.Context) error {
	l.closeMu.Lock()
	l.closed = true
	l.closeMu.Unlock()
	waited := make(chan struct{})
	go func() { l.inflight.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
		return ctx.Err()
	}
	l.cancel()
	l.done.Wait()
	close(l.stopCommitter)
	<-l.committerDone
	return l.closeIndex()
}

func (l *Ledger) closeIndex() error {
	err := l.index.Close()
	l.removeTempIndex()
	return err
}

func (l *Ledger) removeTempIndex() {
	if l.tempIndex != "" {
		os.RemoveAll(l.tempIndex)
	}
}

// enter registers an append in flight; it fails once Close has begun.
func (l *Ledger) enter() error {
	l.closeMu.RLock()
	defer l.closeMu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	l.inflight.Add(1)
	return nil
}

// View is the live projection.
func (l *Ledger) View() *state.View { return l.view }

// Tree is the live Merkle tree.
func (l *Ledger) Tree() *tree.Tree { return l.tree }

// Pseudonym is the keyed pseudonym of a subject identifier.
func (l *Ledger) Pseudonym(subject string) string { return l.pseud.Pseudonym(subject) }

// Stream is the LEDGER stream handle.
func (l *Ledger) Stream() jetstream.Stream { return l.stream }

// JetStream is the JetStream context the ledger uses.
func (l *Ledger) JetStream() jetstream.JetStream { return l.js }

// VerifierKey is the checkpoint verifier key in note format.
func (l *Ledger) VerifierKey() string { return l.signer.VerifierKey() }

// Origin is the checkpoint origin.
func (l *Ledger) Origin() string { return l.signer.Origin() }

// Policy is the policy engine.
func (l *Ledger) Policy() *policy.Engine { return l.opts.Policy }

// Keys is the Vault client.
func (l *Ledger) Keys() *keys.Client { return l.opts.Keys }

// Now is the ledger's clock.
func (l *Ledger) Now() time.Time { return l.now() }
