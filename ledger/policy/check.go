package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/format"
)

// Problem is one thing wrong with a policy set, found by Check.
type Problem struct {
	File    string `json:"file"`
	Row     int    `json:"row,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	if p.Row > 0 {
		return fmt.Sprintf("%s:%d: %s: %s", p.File, p.Row, p.Code, p.Message)
	}
	return fmt.Sprintf("%s: %s: %s", p.File, p.Code, p.Message)
}

// Problem codes of Check besides the compiler's own (rego_parse_error,
// rego_type_error, rego_compile_error, ...).
const (
	ProblemNotFormatted = "not_formatted"
	ProblemData         = "data_error"
	ProblemNoDecision   = "no_decision_rule"
	ProblemEmpty        = "no_rego_files"
)

// Check compiles the set in fsys strictly and checks that every Rego file is
// formatted as `opa fmt` would, for `custos policy check`; it is what
// `opa check --strict` and `opa fmt --diff` report. It returns an error only
// when fsys cannot be read. Checking the tests pass is Test's job.
func Check(ctx context.Context, fsys fs.FS) ([]Problem, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	files, err := readFiles(fsys)
	if err != nil {
		return nil, fmt.Errorf("reading the policy set: %w", err)
	}
	problems := []Problem{}
	modules := map[string]*ast.Module{}
	for _, f := range files {
		if !f.isRego() {
			if _, err := loadData([]file{f}); err != nil {
				problems = append(problems, Problem{File: f.path, Code: ProblemData, Message: err.Error()})
			}
			continue
		}
		m, err := ast.ParseModuleWithOpts(f.path, string(f.src), parserOptions())
		if err != nil {
			problems = append(problems, astProblems(f.path, err)...)
			continue
		}
		modules[f.path] = m
		formatted, err := format.SourceWithOpts(f.path, f.src, format.Opts{RegoVersion: ast.RegoV1})
		if err == nil && !bytes.Equal(formatted, f.src) {
			problems = append(problems, Problem{File: f.path, Code: ProblemNotFormatted, Message: "not formatted as opa fmt would; run opa fmt -w"})
		}
	}
	if len(problems) == 0 {
		if _, err := loadData(files); err != nil {
			problems = append(problems, Problem{File: dataDir, Code: ProblemData, Message: err.Error()})
		}
	}
	switch {
	case len(files) == 0 || (len(modules) == 0 && len(problems) == 0):
		problems = append(problems, Problem{File: ".", Code: ProblemEmpty, Message: "the set has no .rego files"})
	case len(modules) > 0 && !hasParseErrors(problems):
		c := newCompiler()
		if c.Compile(modules); c.Failed() {
			problems = append(problems, astProblems("", c.Errors)...)
		} else if len(c.GetRules(ast.MustParseRef(decisionQuery))) == 0 {
			problems = append(problems, Problem{File: ".", Code: ProblemNoDecision, Message: "no rule " + decisionQuery})
		}
	}
	slices.SortStableFunc(problems, func(a, b Problem) int {
		if c := strings.Compare(a.File, b.File); c != 0 {
			return c
		}
		return a.Row - b.Row
	})
	return problems, nil
}

func hasParseErrors(problems []Problem) bool {
	for _, p := range problems {
		if p.Code == ast.ParseErr {
			return true
		}
	}
	return false
}

func astProblems(file string, err error) []Problem {
	var errs ast.Errors
	if !errors.As(err, &errs) {
		return []Problem{{File: file, Code: ast.CompileErr, Message: err.Error()}}
	}
	out := make([]Problem, 0, len(errs))
	for _, e := range errs {
		p := Problem{File: file, Code: e.Code, Message: e.Message}
		if e.Location != nil {
			p.File, p.Row = e.Location.File, e.Location.Row
		}
		out = append(out, p)
	}
	return out
}
