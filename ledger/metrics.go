package ledger

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the ledger's Prometheus metrics. Labels carry event types and
// reason codes only, never a subject or a value.
type Metrics struct {
	appends            *prometheus.CounterVec
	refusals           *prometheus.CounterVec
	latency            prometheus.Histogram
	conflicts          prometheus.Counter
	followed           prometheus.Gauge
	checkpointSize     prometheus.Gauge
	checkpoints        prometheus.Counter
	checkpointFailures prometheus.Counter
	keysDestroyed      prometheus.Counter
	batchSize          prometheus.Histogram
	batchFallbacks     prometheus.Counter
	integrator         prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "custos_appends_total", Help: "Events appended, by type.",
		}, []string{"type"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "custos_refusals_total", Help: "Events refused, by reason code.",
		}, []string{"reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "custos_append_duration_seconds", Help: "Append latency from decode to acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "custos_decision_conflicts_total", Help: "Decisions re-made because another process appended for the same subject first.",
		}),
		followed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "custos_follower_sequence", Help: "Last LEDGER sequence folded into the tree and state.",
		}),
		checkpointSize: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "custos_checkpoint_tree_size", Help: "Tree size of the latest signed checkpoint.",
		}),
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "custos_checkpoints_signed_total", Help: "Checkpoints signed by this process.",
		}),
		checkpointFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "custos_checkpoint_failures_total", Help: "Checkpoint signing attempts that failed.",
		}),
		keysDestroyed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "custos_subject_keys_destroyed_total", Help: "Subjects crypto-shredded.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "custos_commit_batch_size", Help: fmt.Sprintf("Appends committed together: pipelined publishes below %d, one atomic batch (one fsync) from %d.", atomicMin, atomicMin),
			Buckets: prometheus.ExponentialBuckets(1, 2, 9),
		}),
		integrator: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "custos_integrator", Help: "1 when this process holds the integrator lease and signs checkpoints.",
		}),
		batchFallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "custos_commit_batch_fallbacks_total", Help: "Batches refused as a whole and committed one by one.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.appends, m.refusals, m.latency, m.conflicts, m.followed, m.checkpointSize, m.checkpoints, m.checkpointFailures, m.keysDestroyed, m.batchSize, m.batchFallbacks, m.integrator)
	}
	return m
}

func (m *Metrics) observe(typ string, started time.Time, rc *Receipt, err error) {
	var denied *DeniedError
	switch {
	case err == nil:
		if !rc.Duplicate {
			m.appends.WithLabelValues(typ).Inc()
		}
		m.latency.Observe(time.Since(started).Seconds())
	case errors.As(err, &denied):
		for _, r := range denied.Decision.Reasons {
			m.refusals.WithLabelValues(r.Code).Inc()
		}
	case errors.Is(err, ErrConflict):
		m.refusals.WithLabelValues("duplicate_id_conflict").Inc()
	default:
		m.refusals.WithLabelValues("unavailable").Inc()
	}
}

// RefusedInvalid counts an event refused before it reached the ledger.
func (m *Metrics) RefusedInvalid(code string) { m.refusals.WithLabelValues(code).Inc() }
