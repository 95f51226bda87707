package policy

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// spin never finishes in practice: 10^10 steps, each checking the cancel.
const spin = `package custos.decision

decision := {"allow": true, "reasons": [], "obligations": []} if {
	input.event.type == "privacy.data.transferred"
	count({1 | some i in numbers.range(1, 100000); some j in numbers.range(1, 100000)}) > 0
} else := {"allow": true, "reasons": [], "obligations": []}
`

const spinTest = `package custos.decision_test

import data.custos.decision

test_quick if decision.decision.allow with input as {"event": {"type": "privacy.data.used"}}
`

// A policy that never finishes is stopped at the deadline: the decision is a
// POLICY_ERROR deny saying so, the next decision is not blocked by it, and
// repeated timeouts make the engine report itself unhealthy.
func TestEngineStopsAnEvaluationAtItsDeadline(t *testing.T) {
	s, err := Load(context.Background(), mapFS(map[string]string{"decision.rego": spin, "decision_test.rego": spinTest}))
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(s, WithDeadline(50*time.Millisecond))
	in := transferInput(nil)
	for i := 1; i <= timeoutsForUnready; i++ {
		if _, repeated := e.Timeouts(time.Now()); repeated {
			t.Fatalf("unhealthy after %d timeouts", i-1)
		}
		started := time.Now()
		d := e.Decide(context.Background(), in)
		if took := time.Since(started); took > 5*time.Second {
			t.Fatalf("evaluation took %s with a 50ms deadline", took)
		}
		if d.Allow || !strings.Contains(reasonText(d), "exceeded its deadline of 50ms") || codes(d)[0] != CodePolicyError {
			t.Fatalf("decision %d: %+v", i, d)
		}
	}
	if n, repeated := e.Timeouts(time.Now()); n != timeoutsForUnready || !repeated {
		t.Errorf("after %d timeouts: total %d, repeated %v", timeoutsForUnready, n, repeated)
	}
	if _, repeated := e.Timeouts(time.Now().Add(2 * timeoutWindow)); repeated {
		t.Error("timeouts older than the window still count")
	}
	in.Event.Type = "privacy.data.used"
	if d := e.Decide(context.Background(), in); !d.Allow {
		t.Errorf("a quick decision after the timeouts: %+v", d)
	}
}

func reasonText(d Decision) string {
	var b strings.Builder
	for _, r := range d.Reasons {
		b.WriteString(r.Message)
	}
	return b.String()
}

// A set that calls a built-in reaching the network or the clock, or the
// runtime, is refused at load, naming the built-in; so is one whose tests
// call it.
func TestLoadRefusesNetworkAndNondeterministicBuiltins(t *testing.T) {
	for _, call := range []string{
		`http.send({"method": "POST", "url": "http://127.0.0.1:9/", "body": input})`,
		`net.lookup_ip_addr("example.com")`,
		`time.now_ns()`,
		`opa.runtime()`,
		`rand.intn("x", 10)`,
		`uuid.rfc4122("x")`,
	} {
		name := call[:strings.Index(call, "(")]
		rule := "package custos.decision\n\nx := " + call + "\n\ndecision := {\"allow\": true, \"reasons\": [], \"obligations\": []}\n"
		_, err := Load(context.Background(), mapFS(map[string]string{"decision.rego": rule, "decision_test.rego": allowAllTest}))
		if !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(err.Error(), name) {
			t.Errorf("a set calling %s: %v; want it refused naming %s", name, err, name)
		}
		if !Excluded(name) {
			t.Errorf("Excluded(%s) = false", name)
		}
		test := "package custos.decision_test\n\ntest_calls if " + call + "\n"
		_, err = Load(context.Background(), mapFS(map[string]string{"decision.rego": allowAll, "decision_test.rego": test}))
		if !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(err.Error(), name) {
			t.Errorf("a set whose test calls %s: %v; want it refused naming %s", name, err, name)
		}
	}
	if Excluded("time.parse_rfc3339_ns") || Excluded("net.cidr_contains") == false {
		t.Error("the pure time built-ins must stay; net.* must go")
	}
}

// A set without tests is refused unless that is allowed explicitly.
func TestLoadRefusesAnUntestedSet(t *testing.T) {
	files := mapFS(map[string]string{"decision.rego": allowAll})
	if _, err := Load(context.Background(), files); !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(err.Error(), "no Rego tests") {
		t.Errorf("untested set: %v", err)
	}
	if _, err := Load(context.Background(), files, AllowUntested()); err != nil {
		t.Errorf("untested set, allowed: %v", err)
	}
}
