package policy

import (
	"context"
	"slices"
	"testing"
	"time"
)

// BenchmarkDecide decides a transfer to Singapore by a subject holding five
// consents, and reports the latency distribution (target: p99 ≤ 100 µs).
func BenchmarkDecide(b *testing.B) {
	s := realSet(b)
	in := transferInput(nil, sgConsent("c-1"))
	if n := len(in.Subject.Consents); n != 5 {
		b.Fatalf("%d consents", n)
	}
	ctx := context.Background()
	if d := s.Decide(ctx, in); !d.Allow {
		b.Fatalf("denied: %v", d.Reasons)
	}
	latencies := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	for b.Loop() {
		start := time.Now()
		d := s.Decide(ctx, in)
		latencies = append(latencies, time.Since(start))
		if !d.Allow {
			b.Fatal("denied")
		}
	}
	b.StopTimer()
	cpu = processCPU() - cpu
	slices.Sort(latencies)
	at := func(q float64) float64 {
		return float64(latencies[int(q*float64(len(latencies)-1))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
	// CPU time per decision, garbage collection included: on a shared
	// machine the latencies above also count time spent waiting for a core.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(len(latencies))/1e3, "cpu-µs/op")
}

func BenchmarkInputValue(b *testing.B) {
	s := realSet(b)
	in := transferInput(nil, sgConsent("c-1"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.conv.input(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecideByType decides the event types Custos sees most, for a
// subject with a realistic consent history, to show where policy time goes.
func BenchmarkDecideByType(b *testing.B) {
	s := realSet(b)
	held := append(otherConsents(), sgConsent("c-1"))
	cases := []struct {
		name string
		in   *Input
	}{
		{"transferred", transferInput(nil, sgConsent("c-1"))},
		{"used-exempt", eventInput("privacy.data.used", map[string]any{"categories": []any{"usage.device"}, "purpose": "security"}, subject(held...))},
		{"used-consented", eventInput("privacy.data.used", map[string]any{"categories": []any{"identity.contact"}, "purpose": "service_provision"}, subject(held...))},
		{"collected", eventInput("privacy.data.collected", map[string]any{"categories": []any{"identity.contact"}, "purpose": "service_provision",
			"storage_region": "CN", "retention": "P1Y", "fields": []any{"email"}}, subject(held...))},
		{"consent.granted", eventInput("privacy.consent.granted", map[string]any{"consent_id": "c-9", "notice_version": "2.0",
			"purposes": []any{"notifications"}, "categories": []any{"identity.contact"}}, subject(held...))},
		{"subject.registered", eventInput("privacy.subject.registered", map[string]any{"residence": "CN", "age": 30}, SubjectState{})},
	}
	ctx := context.Background()
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if d := s.Decide(ctx, c.in); !d.Allow {
				b.Fatalf("denied: %v", d.Reasons)
			}
			b.ReportAllocs()
			for b.Loop() {
				s.Decide(ctx, c.in)
			}
		})
	}
}
