package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"
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
	Events        int     `json:"events"`
	IngestPerSec  float64 `json:"ingest_events_per_s"`
	VerifySeconds float64 `json:"verify_seconds"`
	VerifyPerSec  float64 `json:"verify_events_per_s"`
	VerifyHeapMiB float64 `json:"verify_heap_mib"`
	ServerHeapMiB float64 `json:"server_heap_mib"`
	// The process's live heap split by who allocated it: the embedded NATS
	// server, whose duplicate window (10 min), per-block subject state
	// (2 min) and block caches (10 s) hold recent messages, and the rest.
	NATSHeapMiB   float64 `json:"nats_server_heap_mib"`
	CustosHeapMiB float64 `json:"custos_heap_mib"`
	// NATSHeapByPart splits NATSHeapMiB by what holds it (see natsParts).
	NATSHeapByPart   map[string]float64 `json:"nats_server_heap_mib_by_part"`
	StateMillis      float64            `json:"point_in_time_state_ms"`
	ExportMillis     float64            `json:"export_ms"`
	OneSubjectEvents int                `json:"one_subject_events"`
	// RestartSeconds is how long a restart takes: the embedded NATS
	// server recovering its stores, and the ledger replaying the stream
	// into its state, tree and index.
	RestartSeconds float64 `json:"restart_seconds"`
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
	defer func() {
		if a != nil {
			a.Close(context.Background())
		}
	}()
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
		p.NATSHeapByPart, p.CustosHeapMiB = heapByOwner()
		for _, v := range p.NATSHeapByPart {
			p.NATSHeapMiB += v
		}

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

		cfg.Progress(fmt.Sprintf("restarting at %d events", target))
		err = a.Close(ctx)
		a = nil
		if err != nil {
			return nil, err
		}
		t0 = time.Now()
		if a, err = startApp(ctx, dir); err != nil {
			return nil, err
		}
		p.RestartSeconds = time.Since(t0).Seconds()
		points = append(points, p)
	}
	return points, nil
}

// liveHeapMiB collects twice: the NATS server returns block buffers to a
// sync.Pool, whose contents survive one collection.
func liveHeapMiB() float64 {
	runtime.GC()
	runtime.GC()
	return heapMiB()
}

func heapMiB() float64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapInuse) / (1 << 20)
}

// natsParts names what holds the NATS server's memory, by a function on
// the allocation's stack; the first match wins.
var natsParts = []struct{ part, function string }{
	{"duplicate_window", "server.(*stream).storeMsgIdLocked"},
	{"duplicate_window", "server.getMsgId"},
	{"block_cache", "server.getMsgBlockBuf"},
	{"subject_state", "server/stree."},
}

// heapByOwner splits the live heap, as the runtime's heap profile samples
// it, between allocations made by the NATS server's code (by part) and the
// rest. The caller collects first, so the profile is current.
func heapByOwner() (nats map[string]float64, restMiB float64) {
	nats = map[string]float64{}
	n, _ := runtime.MemProfile(nil, false)
	recs := make([]runtime.MemProfileRecord, n+64)
	n, ok := runtime.MemProfile(recs, false)
	if !ok {
		return nats, 0
	}
	rate := float64(runtime.MemProfileRate)
	for _, r := range recs[:n] {
		bytes, objects := float64(r.InUseBytes()), float64(r.InUseObjects())
		if objects == 0 {
			continue
		}
		// Undo the sampling, as pprof does: an allocation of size s is
		// sampled with probability 1-exp(-s/rate).
		mib := bytes / (1 - math.Exp(-bytes/objects/rate)) / (1 << 20)
		if part, ok := natsPart(r.Stack()); ok {
			nats[part] += mib
		} else {
			restMiB += mib
		}
	}
	return nats, restMiB
}

// natsPart tells whether the NATS server's code made an allocation, and
// which of natsParts holds it ("other" for none).
func natsPart(stack []uintptr) (string, bool) {
	frames := runtime.CallersFrames(stack)
	isNATS, part := false, ""
	for {
		f, more := frames.Next()
		if strings.HasPrefix(f.Function, "github.com/nats-io/nats-server/") {
			isNATS = true
			for _, p := range natsParts {
				if part == "" && strings.Contains(f.Function, p.function) {
					part = p.part
				}
			}
		}
		if !more {
			break
		}
	}
	if part == "" {
		part = "other"
	}
	return part, isNATS
}
