package policy

import (
	"context"
	"testing"
)

func BenchmarkFloor(b *testing.B) {
	s, err := Load(context.Background(), mapFS(map[string]string{"decision.rego": allowAll}))
	if err != nil {
		b.Fatal(err)
	}
	in := transferInput(nil, sgConsent("c-1"))
	b.ReportAllocs()
	for b.Loop() {
		s.Decide(context.Background(), in)
	}
}
