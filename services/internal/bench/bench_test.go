package bench

import (
	"context"
	"testing"
)

// The benchmark harness itself works end to end on a small load: every
// figure is measured and the ledger it built verifies. Speed is not
// asserted here; BenchmarkRatios and `custos bench` report it.
func TestRunSmall(t *testing.T) {
	res, err := Run(context.Background(), Config{Events: 400, Clients: 8, Decisions: 200, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]float64{
		"raw async": res.RawAsyncPublish, "raw sync": res.RawSyncPublish, "raw read": res.RawRead,
		"ingest": res.Ingest, "in-process": res.InProcess, "verify": res.Verify, "decisions/s": res.DecisionsPerSec,
	} {
		if v <= 0 {
			t.Errorf("%s not measured", name)
		}
	}
	if res.Limits.DecisionFloorP50us <= 0 || res.Limits.DecisionFloorP50us >= res.DecisionP50us {
		t.Errorf("a one-rule policy took %.1f µs at p50, the built-in set %.1f µs", res.Limits.DecisionFloorP50us, res.DecisionP50us)
	}
	if _, ok := processCPU(); ok {
		for name, v := range map[string]float64{"in-process CPU": res.Limits.InProcessCPUus, "raw CPU": res.Limits.RawAsyncCPUus,
			"decision CPU": res.Limits.DecisionCPUus, "in-process cores": res.Limits.InProcessCores} {
			if v <= 0 {
				t.Errorf("%s not measured", name)
			}
		}
	}
	// Vault calls are bounded by subjects and checkpoints, not events.
	if max := uint64(3*res.Subjects + 10*res.Checkpoints + 10); res.VaultCalls > max {
		t.Errorf("%d Vault calls for %d subjects and %d checkpoints", res.VaultCalls, res.Subjects, res.Checkpoints)
	}
}

// BenchmarkRatios runs the whole comparison once per iteration and reports
// Custos's figures as ratios to the raw engine measured in the same run.
func BenchmarkRatios(b *testing.B) {
	for b.Loop() {
		res, err := Run(context.Background(), Config{Events: 5000, Clients: 64, Decisions: 5000, Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(res.IngestVsAsync, "ingest/raw-async")
		b.ReportMetric(res.InProcVsAsync, "inproc/raw-async")
		b.ReportMetric(res.InProcVsSync, "inproc/raw-sync")
		b.ReportMetric(res.VerifyVsRawRead, "verify/raw-read")
		b.ReportMetric(res.BatchVsSync, "groupcommit/raw-sync")
		b.ReportMetric(res.DecisionP99us, "decision-p99-µs")
		b.ReportMetric(res.VaultPer100k, "vault-calls/100k")
	}
}
