package policy

import (
	"context"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

// Report is the outcome of a set's Rego tests (rules named test_*).
type Report struct {
	Revision string    `json:"revision"`
	Passed   []string  `json:"passed"`
	Failed   []Failure `json:"failed"`
	// Coverage is the percentage of policy lines, test files excluded, the
	// tests evaluated; zero when coverage was not measured.
	Coverage float64 `json:"coverage"`
}

// Failure is one test that failed or could not be evaluated.
type Failure struct {
	Name     string `json:"name"`
	Location string `json:"location"`
	Error    string `json:"error,omitempty"`
}

// OK reports whether every test passed.
func (r Report) OK() bool { return len(r.Failed) == 0 }

// Test runs the Rego tests of the set in fsys with coverage, for
// `custos policy test`. A set that does not compile is an error wrapping
// ErrInvalidPolicy; failing tests are reported, not returned as an error.
func Test(ctx context.Context, fsys fs.FS) (Report, error) {
	files, err := readFiles(fsys)
	if err != nil {
		return Report{}, fmt.Errorf("%w: reading the set: %w", ErrInvalidPolicy, err)
	}
	c, err := compile(files)
	if err != nil {
		return Report{}, err
	}
	report, err := runTests(ctx, c, true)
	if err != nil {
		return Report{}, fmt.Errorf("%w: running the tests: %w", ErrInvalidPolicy, err)
	}
	report.Revision = revision(files)
	return report, nil
}

// testTimeout bounds each Rego test.
const testTimeout = 10 * time.Second

// runTests runs the set's tests against its own data, as `opa test` does.
func runTests(ctx context.Context, c *compiled, coverage bool) (Report, error) {
	data, err := c.dataValue()
	if err != nil {
		return Report{}, err
	}
	runner := tester.NewRunner().
		SetCompiler(ast.NewCompiler().
			WithCapabilities(capabilities()).
			WithDefaultRegoVersion(ast.RegoV1)).
		// A test that never finishes must not hang a load.
		SetTimeout(testTimeout).
		SetStore(inmem.NewFromASTObject(data)).
		SetModules(c.modules).
		CapturePrintOutput(false).
		RaiseBuiltinErrors(true)
	var cov *cover.Cover
	if coverage {
		cov = cover.New()
		runner = runner.SetCoverageQueryTracer(cov).SetCoverageRuns(nil)
	}
	ch, err := runner.RunTests(ctx, nil)
	if err != nil {
		return Report{}, err
	}
	report := Report{Passed: []string{}, Failed: []Failure{}}
	for r := range ch {
		name := r.Package + "." + r.Name
		if r.Skip {
			continue
		}
		if r.Pass() {
			report.Passed = append(report.Passed, name)
			continue
		}
		f := Failure{Name: name}
		if r.Location != nil {
			f.Location = r.Location.String()
		}
		if r.Error != nil {
			f.Error = r.Error.Error()
		}
		report.Failed = append(report.Failed, f)
	}
	if err := ctx.Err(); err != nil {
		return Report{}, err
	}
	slices.Sort(report.Passed)
	slices.SortFunc(report.Failed, func(a, b Failure) int { return strings.Compare(a.Name, b.Name) })
	if cov != nil {
		report.Coverage = policyCoverage(cov.Report(c.modules))
	}
	return report, nil
}

// policyCoverage is the share of covered lines in the files that are not
// tests: test files are always fully run, so counting them would flatter.
func policyCoverage(r cover.Report) float64 {
	var covered, notCovered int
	for file, fr := range r.Files {
		if strings.HasSuffix(file, "_test.rego") {
			continue
		}
		covered += fr.CoveredLines
		notCovered += fr.NotCoveredLines
	}
	if covered+notCovered == 0 {
		return 0
	}
	return 100 * float64(covered) / float64(covered+notCovered)
}
