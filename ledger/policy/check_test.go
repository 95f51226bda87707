package policy

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
)

func TestTestRealSet(t *testing.T) {
	r, err := Test(context.Background(), os.DirFS(realSetDir))
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || len(r.Passed) < 50 {
		t.Errorf("passed %d, failed %v", len(r.Passed), r.Failed)
	}
	if r.Coverage < 90 {
		t.Errorf("coverage %.1f%% below 90%%", r.Coverage)
	}
	if r.Revision != realSet(t).Revision() {
		t.Errorf("report revision %s differs from the loaded set's", r.Revision)
	}
	if !slices.IsSorted(r.Passed) {
		t.Error("passed tests not sorted")
	}
}

func TestTestReportsFailures(t *testing.T) {
	r, err := Test(context.Background(), mapFS(map[string]string{
		"decision.rego": allowAll + "\nunreached if input.never\n",
		"decision_test.rego": `package custos.decision_test

import data.custos.decision

test_allows if decision.decision.allow

test_denies if not decision.decision.allow

test_errors if time.parse_rfc3339_ns("yesterday")
`,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if r.OK() || !slices.Equal(r.Passed, []string{"data.custos.decision_test.test_allows"}) {
		t.Errorf("passed %v", r.Passed)
	}
	var failed []string
	for _, f := range r.Failed {
		failed = append(failed, f.Name)
		if f.Location == "" {
			t.Errorf("%s has no location", f.Name)
		}
	}
	if !slices.Equal(failed, []string{"data.custos.decision_test.test_denies", "data.custos.decision_test.test_errors"}) {
		t.Errorf("failed %v", failed)
	}
	if r.Failed[1].Error == "" {
		t.Error("the erroring test has no error")
	}
	// One of the two policy rules (decision, unreached) is never reached.
	if r.Coverage <= 0 || r.Coverage >= 100 {
		t.Errorf("coverage %.1f%%", r.Coverage)
	}
}

func TestTestRefusesUncompilableSet(t *testing.T) {
	_, err := Test(context.Background(), mapFS(map[string]string{"decision.rego": "package custos.decision\n\nx :=\n"}))
	if !errors.Is(err, ErrInvalidPolicy) {
		t.Errorf("error %v, want ErrInvalidPolicy", err)
	}
}

func TestCheckRealSetClean(t *testing.T) {
	problems, err := Check(context.Background(), os.DirFS(realSetDir))
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 0 {
		t.Errorf("problems: %v", problems)
	}
}

func TestCheckFindsProblems(t *testing.T) {
	tests := map[string]struct {
		files map[string]string
		want  Problem
	}{
		"not formatted": {map[string]string{"decision.rego": "package custos.decision\ndecision := {\"allow\": true}\n"},
			Problem{File: "decision.rego", Code: ProblemNotFormatted}},
		"parse error": {map[string]string{"decision.rego": allowAll, "b.rego": "package b\n\nx := {\n"},
			Problem{File: "b.rego", Row: 4, Code: "rego_parse_error"}},
		"strict: unused variable": {map[string]string{"decision.rego": allowAll + "\nf if {\n\tx := 1\n}\n"},
			Problem{File: "decision.rego", Row: 6, Code: "rego_compile_error"}},
		"unsafe variable": {map[string]string{"decision.rego": allowAll + "\nf if x > 1\n"},
			Problem{File: "decision.rego", Row: 5, Code: "rego_unsafe_var_error"}},
		"bad data": {map[string]string{"decision.rego": allowAll, "data/custos/config/data.json": "{"},
			Problem{File: "data/custos/config/data.json", Code: ProblemData}},
		"no decision": {map[string]string{"other.rego": "package other\n\nx := 1\n"},
			Problem{File: ".", Code: ProblemNoDecision}},
		"empty": {map[string]string{"README.md": "nothing"},
			Problem{File: ".", Code: ProblemEmpty}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			problems, err := Check(context.Background(), mapFS(tt.files))
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems {
				if p.File == tt.want.File && p.Code == tt.want.Code && (tt.want.Row == 0 || p.Row == tt.want.Row) {
					if p.Message == "" || p.String() == "" {
						t.Errorf("problem without message: %+v", p)
					}
					return
				}
			}
			t.Errorf("problems %v, want one like %+v", problems, tt.want)
		})
	}
}
