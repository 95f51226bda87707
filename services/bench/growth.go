package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"custos.dev/ledger"
	"custos.dev/ledger/event"
	"custos.dev/ledger/verify"
)

// GrowthConfig shapes a growth run.
type GrowthConfig struct {
	Events   int // total events
	Subjects int // distinct data subjects
	Stages   int // measurement points, evenly spaced
	Clients  int
	Dir      string
	Progress func(stage string)
}

// GrowthPoint is the measurements at one ledger size.
type GrowthPoint struct {
	Events           int     `json:"events"`
	IngestPerSec     float64 `json:"ingest_events_per_s"`
	VerifySeconds    float64 `json:"verify_seconds"`
	VerifyPerSec     float64 `json:"verify_events_per_s"`
	VerifyHeapMiB    float64 `json:"verify_heap_mib"`
	ServerHeapMiB    float64 `json:"server_heap_mib"`
	StateMillis      float64 `json:"point_in_time_state_ms"`
	ExportMillis     float64 `json:"export_ms"`
	OneSubjectEvents int     `json:"one_subject_events"`
}

// Growth ingests events in stages and, at each stage, times a full verify,
// a point-in-time state and an export of one subject, and reads heap sizes,
// to show how each grows with the ledger.
func Growth(ctx context.Context, cfg GrowthConfig) ([]GrowthPoint, error) {
	if cfg.Stages <= 0 {
		cfg.Stages = 4
	}
	if cfg.Subjects <= 0 {
		cfg.Subjects = 10000
	}
	if cfg.Clients <= 0 {
		cfg.Clients = 64
	}
	if cfg.Progress == nil {
		cfg.Progress = func(string) {}
	}
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "custos-growth-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	a, err := startApp(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer a.Close(context.Background())
	now := time.Now().UTC().Format(time.RFC3339)
	send := func(i int) error {
		var body string
		subj := i % cfg.Subjects
		if i < cfg.Subjects {
			body = fmt.Sprintf(`{"specversion":"1.0","id":"g-%d","source":%q,"type":"privacy.subject.registered","subject":"growth-%d","time":%q,"datacontenttype":"application/json","data":{"residence":"CN","age":30}}`, i, benchSource, subj, now)
		} else {
			body = fmt.Sprintf(`{"specversion":"1.0","id":"g-%d","source":%q,"type":"privacy.data.used","subject":"growth-%d","time":%q,"datacontenttype":"application/json","data":{"categories":["usage.device"],"purpose":"security"}}`, i, benchSource, subj, now)
		}
		e, err := event.Decode([]byte(body), time.Now())
		if err != nil {
			return err
		}
		_, err = a.Ledger.Append(ctx, e)
		return err
	}
	var points []GrowthPoint
	done := 0
	for stage := 1; stage <= cfg.Stages; stage++ {
		target := cfg.Events * stage / cfg.Stages
		cfg.Progress(fmt.Sprintf("ingesting to %d events", target))
		t0 := time.Now()
		if _, _, err := workers(cfg.Clients, done, target, send); err != nil {
			return nil, err
		}
		p := GrowthPoint{Events: target, IngestPerSec: float64(target-done) / time.Since(t0).Seconds()}
		done = target
		if err := a.Ledger.WaitApplied(ctx, uint64(a.Ledger.Tree().Size())); err != nil {
			return nil, err
		}
		if err := a.Ledger.SignNow(ctx); err != nil {
			return nil, err
		}
		p.ServerHeapMiB = liveHeapMiB()

		cfg.Progress(fmt.Sprintf("verifying %d events", target))
		js, _ := jetstream.New(a.Conn())
		// Live heap after a collection, before and during verification
		// (sampled every 64k events), so the figure is what verification
		// keeps, not garbage the collector has yet to reclaim.
		before := liveHeapMiB()
		var peak float64
		t0 = time.Now()
		var gcTime time.Duration
		rep, err := verify.Run(ctx, ledger.NewReader(js).Source(), verify.Options{VerifierKey: a.Ledger.VerifierKey(), Progress: func(n int64) {
			if n%65536 != 0 {
				return
			}
			g := time.Now()
			if h := liveHeapMiB(); h > peak {
				peak = h
			}
			gcTime += time.Since(g)
		}})
		if err != nil {
			return nil, err
		}
		if !rep.OK {
			return nil, fmt.Errorf("verify at %d events: %s", target, rep.Problem)
		}
		p.VerifySeconds = (time.Since(t0) - gcTime).Seconds()
		p.VerifyPerSec = float64(rep.Events) / p.VerifySeconds
		p.VerifyHeapMiB = max(peak-before, 0)

		pseud := a.Ledger.Pseudonym("growth-7")
		t0 = time.Now()
		s, err := a.Ledger.SubjectAt(ctx, pseud, time.Now())
		if err != nil {
			return nil, err
		}
		p.StateMillis = float64(time.Since(t0).Microseconds()) / 1000
		p.OneSubjectEvents = s.Events
		t0 = time.Now()
		if _, _, err := a.Ledger.Export(ctx, pseud); err != nil {
			return nil, err
		}
		p.ExportMillis = float64(time.Since(t0).Microseconds()) / 1000
		points = append(points, p)
	}
	return points, nil
}

func liveHeapMiB() float64 {
	runtime.GC()
	return heapMiB()
}

func heapMiB() float64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapInuse) / (1 << 20)
}
