package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream and subject names (docs/architecture.md).
const (
	StreamName           = "LEDGER"
	CheckpointStreamName = "LEDGER_CHECKPOINTS"
	// CheckpointSubject carries every signed checkpoint.
	CheckpointSubject = "checkpoints.ledger"
	subjectPrefix     = "ledger"
)

// DefaultDuplicates is the JetStream duplicates window. It only has to
// cover re-sends racing each other across processes: every re-send is first
// looked up in Custos's own source+id index, which has no window. The server
// keeps every id of its window in memory, so a short window keeps its memory
// from growing with the ingest rate.
const DefaultDuplicates = 10 * time.Minute

// ErrWeakStream reports an existing stream whose settings are weaker than
// the ledger needs; Custos refuses to run on it rather than weaken a promise.
var ErrWeakStream = errors.New("ledger stream settings are weaker than required")

// StreamOptions shape the ledger streams.
type StreamOptions struct {
	Replicas   int                  // 1 by default; 3 on a cluster
	Placement  *jetstream.Placement // region tags, e.g. region:cn
	Duplicates time.Duration        // DefaultDuplicates by default
}

// SubjectFor is the NATS subject of a record: ledger.s.<pseudonym>.<type> for
// a data subject's events and ledger.g._.<type> for the rest, so that the
// stream can be filtered by subject or by type without a scan.
func SubjectFor(pseudonym, typ string) string {
	if pseudonym == "" {
		return subjectPrefix + ".g._." + typ
	}
	return subjectPrefix + ".s." + pseudonym + "." + typ
}

// SubjectFilter is the filter matching every record of one data subject.
func SubjectFilter(pseudonym string) string { return subjectPrefix + ".s." + pseudonym + ".>" }

// TypeFilter is the filter matching every record of one event type.
func TypeFilter(typ string) string { return subjectPrefix + ".*.*." + typ }

func ledgerConfig(o StreamOptions) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              StreamName,
		Description:       "Custos privacy ledger: append-only",
		Subjects:          []string{subjectPrefix + ".>"},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardNew,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxAge:            0,
		MaxMsgsPerSubject: -1,
		MaxMsgSize:        -1,
		Duplicates:        o.Duplicates,
		Replicas:          o.Replicas,
		Placement:         o.Placement,
		DenyDelete:        true,
		DenyPurge:         true,
		AllowRollup:       false,
		AllowDirect:       true,
		// Atomic batches let the appender pay one fsync for many events.
		AllowAtomicPublish: true,
	}
}

func checkpointConfig(o StreamOptions) jetstream.StreamConfig {
	c := ledgerConfig(o)
	c.Name = CheckpointStreamName
	c.Description = "Custos signed checkpoints of LEDGER"
	c.Subjects = []string{CheckpointSubject}
	c.AllowAtomicPublish = false
	return c
}

func (o StreamOptions) withDefaults() StreamOptions {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Duplicates == 0 {
		o.Duplicates = DefaultDuplicates
	}
	return o
}

// EnsureStreams creates the two ledger streams, or checks that existing ones
// are at least as strict as required.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) (ledger, checkpoints jetstream.Stream, err error) {
	o = o.withDefaults()
	if ledger, err = ensure(ctx, js, ledgerConfig(o)); err != nil {
		return nil, nil, err
	}
	if checkpoints, err = ensure(ctx, js, checkpointConfig(o)); err != nil {
		return nil, nil, err
	}
	return ledger, checkpoints, nil
}

func ensure(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, want)
		if err != nil {
			return nil, fmt.Errorf("create stream %s: %w", want.Name, err)
		}
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", want.Name, err)
	}
	if err := CheckStreamConfig(s.CachedInfo().Config, want); err != nil {
		return nil, err
	}
	return s, nil
}

// CheckStreamConfig reports the first setting in which have is weaker than
// want, naming it.
func CheckStreamConfig(have, want jetstream.StreamConfig) error {
	weak := func(setting, why string) error {
		return fmt.Errorf("%w: stream %s: %s %s", ErrWeakStream, have.Name, setting, why)
	}
	switch {
	case have.Storage != jetstream.FileStorage:
		return weak("storage", "must be file")
	case have.Retention != jetstream.LimitsPolicy:
		return weak("retention", "must be limits")
	case !have.DenyDelete:
		return weak("deny_delete", "must be true")
	case !have.DenyPurge:
		return weak("deny_purge", "must be true")
	case have.AllowRollup:
		return weak("allow_rollup_hdrs", "must be false")
	case have.Discard != jetstream.DiscardNew:
		return weak("discard", "must be new")
	case have.MaxMsgs > 0:
		return weak("max_msgs", "must be unlimited")
	case have.MaxBytes > 0:
		return weak("max_bytes", "must be unlimited")
	case have.MaxAge > 0:
		return weak("max_age", "must be unlimited")
	case have.MaxMsgsPerSubject > 0:
		return weak("max_msgs_per_subject", "must be unlimited")
	case have.Duplicates <= 0:
		return weak("duplicate_window", "must be set")
	case have.Replicas < want.Replicas:
		return weak("num_replicas", fmt.Sprintf("is %d, %d required", have.Replicas, want.Replicas))
	case have.AllowMsgTTL:
		return weak("allow_msg_ttl", "must be false")
	case have.Mirror != nil || len(have.Sources) > 0:
		return weak("mirror/sources", "must not be set")
	}
	if want.Placement != nil && len(want.Placement.Tags) > 0 {
		if have.Placement == nil || !containsAll(have.Placement.Tags, want.Placement.Tags) {
			return weak("placement", fmt.Sprintf("must carry the tags %v (the ledger must stay in its region)", want.Placement.Tags))
		}
	}
	if !sameStrings(have.Subjects, want.Subjects) {
		return weak("subjects", fmt.Sprintf("are %v, %v required", have.Subjects, want.Subjects))
	}
	return nil
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}
