package cli

import (
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"time"

	"github.com/spf13/cobra"

	"custos.dev/ledger"
	"custos.dev/services/internal/bench"
)

func (e *env) benchCmd() *cobra.Command {
	var cfg bench.Config
	var cpuProfile string
	var growth, subjects, stages int
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure Custos against raw NATS JetStream on this machine and print the ratios",
		Long: `Start a fresh embedded Custos (NATS with fsync on every message, the built-in
policies, the dev key server) and, in the same run, a raw embedded NATS with
the same durability; measure raw async publish, raw per-message synchronous
publish, raw ordered reads, Custos ingest over HTTP with concurrent clients
(p50/p99), in-process policy decisions (p50/p99), custos verify, and Vault
calls per 100k events. Every Custos figure is printed next to its raw
ceiling as a ratio.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return withCode(ExitUsage, err)
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return withCode(ExitUsage, err)
				}
				defer pprof.StopCPUProfile()
			}
			started := time.Now()
			cfg.Progress = func(stage string) {
				fmt.Fprintf(e.stderr, "[%5.1fs] %s\n", time.Since(started).Seconds(), stage)
			}
			if growth > 0 {
				points, err := bench.Growth(cmd.Context(), bench.GrowthConfig{Events: growth, Subjects: subjects, Stages: stages, Clients: cfg.Clients, Dir: cfg.Dir, Progress: cfg.Progress})
				if err != nil {
					return withCode(ExitUsage, err)
				}
				return e.print(points, func(w io.Writer) {
					fmt.Fprintf(w, "%10s %10s %10s %10s %10s %12s %10s %10s %10s %10s %10s\n", "events", "ingest/s", "verify s", "verify/s", "verify MiB", "server MiB", "NATS MiB", "Custos MiB", "state ms", "export ms", "restart s")
					for _, p := range points {
						fmt.Fprintf(w, "%10d %10.0f %10.2f %10.0f %10.1f %12.1f %10.1f %10.1f %10.2f %10.2f %10.2f\n", p.Events, p.IngestPerSec, p.VerifySeconds, p.VerifyPerSec, p.VerifyHeapMiB, p.ServerHeapMiB, p.NATSHeapMiB, p.CustosHeapMiB, p.StateMillis, p.ExportMillis, p.RestartSeconds)
					}
				})
			}
			res, err := bench.Run(cmd.Context(), cfg)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			return e.print(res, func(w io.Writer) {
				fmt.Fprintf(w, "machine: %d CPUs %s/%s, %s; %d events, %d clients, stored body %d B\n\n",
					res.Machine.CPUs, res.Machine.OS, res.Machine.Arch, res.GoVersion, res.Events, res.Clients, res.BodySize)
				fmt.Fprintf(w, "%-44s %12s %14s %8s\n", "measure", "custos", "raw ceiling", "ratio")
				row := func(name string, c, r float64) { fmt.Fprintf(w, "%-44s %12.0f %14.0f %8.2f\n", name, c, r, c/r) }
				row("ingest events/s vs raw async publish", res.Ingest, res.RawAsyncPublish)
				row("ingest events/s vs raw per-message sync", res.Ingest, res.RawSyncPublish)
				row("in-process ingest vs raw async publish", res.InProcess, res.RawAsyncPublish)
				row("in-process ingest vs raw per-message sync", res.InProcess, res.RawSyncPublish)
				row("verify events/s vs raw ordered read", res.Verify, res.RawRead)
				row(fmt.Sprintf("group commit (%d/batch) vs per-message sync", ledger.MaxCommitGroup), res.RawBatchPublish, res.RawSyncPublish)
				fmt.Fprintf(w, "group commit by batch size: 16: %.0f/s, 64: %.0f/s, %d: %.0f/s\n", res.RawBatchBySize[16], res.RawBatchBySize[64],
					ledger.MaxCommitGroup, res.RawBatchBySize[ledger.MaxCommitGroup])
				fmt.Fprintf(w, "\ningest latency p50 %.2f ms, p99 %.2f ms (HTTP), p50 %.2f ms, p99 %.2f ms (in-process); mean commit group %.1f events\n",
					res.IngestP50ms, res.IngestP99ms, res.InProcessP50ms, res.InProcessP99ms, res.MeanCommitBatch)
				fmt.Fprintf(w, "decision p50 %.1f µs, p99 %.1f µs, %.0f decisions/s\n", res.DecisionP50us, res.DecisionP99us, res.DecisionsPerSec)
				l := res.Limits
				fmt.Fprintf(w, "limits: CPU per event %.0f µs in-process (%.2f cores busy) vs %.0f µs per raw async message (%.2f cores busy)\n",
					l.InProcessCPUus, l.InProcessCores, l.RawAsyncCPUus, l.RawAsyncCores)
				fmt.Fprintf(w, "        decision CPU %.0f µs; a one-rule policy on the same input: p50 %.1f µs, p99 %.1f µs\n",
					l.DecisionCPUus, l.DecisionFloorP50us, l.DecisionFloorP99us)
				fmt.Fprintf(w, "Vault calls: %d for %d events and %d subjects (%.0f per 100k events)\n", res.VaultCalls, res.Events, res.Subjects, res.VaultPer100k)
				verdict := func(met bool) string {
					if met {
						return "met"
					}
					return "missed"
				}
				t := res.TargetsMet
				fmt.Fprintf(w, "targets: ingest ≥ 0.5 of raw async %s (%.2f in-process, %.2f HTTP); verify ≥ 0.5 of raw read %s (%.2f);\n",
					verdict(t.IngestHalfOfRaw), res.InProcVsAsync, res.IngestVsAsync, verdict(t.VerifyHalfOfRaw), res.VerifyVsRawRead)
				fmt.Fprintf(w, "         decision p99 ≤ 100 µs %s (%.0f µs); group commit ≥ 4× per-message sync %s (%.1f×)\n",
					verdict(t.DecisionP99), res.DecisionP99us, verdict(t.GroupCommit4x), res.BatchVsSync)
				fmt.Fprintf(w, "         what-if ≥ 0.5 of live decisions %s (%.0f/s re-decided vs %.0f/s live, %.2f)\n",
					verdict(t.WhatIfHalfOfLive), res.WhatIf, res.DecisionsPerSec, res.WhatIfVsLive)
				if !t.All() {
					fmt.Fprintln(w, "why a target is missed: the limits above, and docs/performance.md, \"What limits it\"")
				}
			})
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Events, "events", 20000, "events to ingest (and raw messages to publish)")
	f.IntVar(&cfg.Clients, "clients", 64, "concurrent clients")
	f.IntVar(&cfg.Decisions, "decisions", 20000, "policy decisions to time")
	f.IntVar(&growth, "growth", 0, "instead: ingest this many events in stages and show how verify time, memory, state and export grow")
	f.IntVar(&subjects, "subjects", 10000, "with --growth: distinct data subjects")
	f.IntVar(&stages, "stages", 4, "with --growth: measurement points")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the run (go tool pprof) to this file")
	f.StringVar(&cfg.Dir, "dir", "", "work directory (default: a temporary one, removed afterwards)")
	return cmd
}
