// Package policy decides events with a Rego policy set, as docs/policies.md requires:
// every event is evaluated by the active set before it is appended. It loads a
// set (Rego rules, their tests, and data), refuses one that does not compile
// strictly or whose tests fail, evaluates data.custos.decision.decision
// against the input of docs/policy-input.md, and hot-reloads a watched
// directory. The built-in set and its rules are described in docs/policies.md.
package policy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// ErrInvalidPolicy is returned for a set that cannot be used: unreadable,
// not strict-clean, without a decision rule, or with failing tests.
var ErrInvalidPolicy = errors.New("invalid policy set")

// CodePolicyError is the reason code of a decision the policy could not make.
const CodePolicyError = "POLICY_ERROR"

// decisionQuery is what every event is decided by (docs/policy-input.md).
const decisionQuery = "data.custos.decision.decision"

// Set is a compiled and tested policy set. It is immutable and safe for
// concurrent use.
type Set struct {
	revision string
	query    rego.PreparedEvalQuery
	config   map[string]any
	rights   rightsTable
	conv     *converter
	noCancel topdown.Cancel
	// noMetrics spares each evaluation the timers and maps OPA otherwise
	// creates for its own metrics, which nothing here reads.
	noMetrics metrics.Metrics
}

// Load reads the set in fsys (see readFiles for which files count), compiles
// its Rego strictly, loads its data, runs its Rego tests and prepares the
// decision query. A set that fails any of this is refused with an error
// wrapping ErrInvalidPolicy.
// A set with no Rego tests is refused too, unless AllowUntested is given:
// a policy is code that decides every event, and one nobody tested is a
// mistake waiting to be activated.
func Load(ctx context.Context, fsys fs.FS, opts ...LoadOption) (*Set, error) {
	var o loadOptions
	for _, f := range opts {
		f(&o)
	}
	files, err := readFiles(fsys)
	if err != nil {
		return nil, fmt.Errorf("%w: reading the set: %w", ErrInvalidPolicy, err)
	}
	c, err := compile(files)
	if err != nil {
		return nil, err
	}

	report, err := runTests(ctx, c, false)
	if err != nil {
		return nil, fmt.Errorf("%w: running the tests: %w", ErrInvalidPolicy, err)
	}
	if len(report.Passed)+len(report.Failed) == 0 && !o.allowUntested {
		return nil, fmt.Errorf("%w: the set has no Rego tests (test_ rules); add them, or allow an untested set explicitly", ErrInvalidPolicy)
	}
	if len(report.Failed) > 0 {
		names := make([]string, len(report.Failed))
		for i, f := range report.Failed {
			names[i] = f.Name
		}
		return nil, fmt.Errorf("%w: %d of %d tests failed: %s", ErrInvalidPolicy,
			len(report.Failed), len(report.Failed)+len(report.Passed), strings.Join(names, ", "))
	}

	data, err := c.dataValue()
	if err != nil {
		return nil, err
	}
	store := inmem.NewFromASTObject(data)
	q, err := settingsChecked(ctx, c, store)
	if err != nil {
		return nil, err
	}
	query, err := rego.New(
		rego.Query(q),
		rego.Compiler(c.compiler),
		rego.Store(store),
		// A built-in that fails (a malformed time, say) must deny with
		// POLICY_ERROR, not leave a deny rule silently undefined.
		rego.StrictBuiltinErrors(true),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: preparing the decision query: %w", ErrInvalidPolicy, err)
	}

	config, _ := lookup(c.data, "custos", "config").(map[string]any)
	rights, err := parseRights(config["rights"])
	if err != nil {
		return nil, fmt.Errorf("%w: data.custos.config.rights: %w", ErrInvalidPolicy, err)
	}
	return &Set{
		revision:  revision(files),
		query:     query,
		config:    config,
		rights:    rights,
		conv:      newConverter(c.data),
		noCancel:  topdown.NewCancel(),
		noMetrics: metrics.NoOp(),
	}, nil
}

// LoadOption adjusts Load.
type LoadOption func(*loadOptions)

type loadOptions struct{ allowUntested bool }

// AllowUntested accepts a set that has no Rego tests.
func AllowUntested() LoadOption { return func(o *loadOptions) { o.allowUntested = true } }

// A set may split its decision in two (the built-in set does): config_deny,
// the problems of its settings, which depends on data alone, and
// decision_unchecked, the decision once the settings are valid. Data is
// fixed for a loaded set, so the settings are checked here once, the set is
// refused if they have problems, and every event is decided by
// decision_unchecked: the same decisions, without the checks' cost on each.
const (
	configDenyQuery = "data.custos.decision.config_deny"
	uncheckedQuery  = "data.custos.decision.decision_unchecked"
)

// settingsChecked returns the query every event is decided by, refusing a
// set whose settings are invalid.
func settingsChecked(ctx context.Context, c *compiled, store storage.Store) (string, error) {
	if len(c.compiler.GetRules(ast.MustParseRef(configDenyQuery))) == 0 || len(c.compiler.GetRules(ast.MustParseRef(uncheckedQuery))) == 0 {
		return decisionQuery, nil
	}
	rs, err := rego.New(rego.Query(configDenyQuery), rego.Compiler(c.compiler), rego.Store(store), rego.StrictBuiltinErrors(true)).Eval(ctx)
	if err != nil {
		return "", fmt.Errorf("%w: checking the settings: %w", ErrInvalidPolicy, err)
	}
	if len(rs) == 1 && len(rs[0].Expressions) == 1 {
		if problems, _ := rs[0].Expressions[0].Value.([]any); len(problems) > 0 {
			var msgs []string
			for _, p := range problems {
				m, _ := p.(map[string]any)
				msgs = append(msgs, fmt.Sprintf("%v: %v", m["code"], m["message"]))
			}
			slices.Sort(msgs)
			return "", fmt.Errorf("%w: the settings data.custos.config are unusable: %s", ErrInvalidPolicy, strings.Join(msgs, "; "))
		}
	}
	return uncheckedQuery, nil
}

// compiled is a parsed and strictly compiled set.
type compiled struct {
	modules  map[string]*ast.Module
	data     map[string]any
	compiler *ast.Compiler
}

func compile(files []file) (*compiled, error) {
	modules, err := parseModules(files)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPolicy, err)
	}
	data, err := loadData(files)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPolicy, err)
	}
	if err := checkConfig(data); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPolicy, err)
	}
	c := newCompiler()
	if c.Compile(modules); c.Failed() {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPolicy, c.Errors)
	}
	if len(c.GetRules(ast.MustParseRef(decisionQuery))) == 0 {
		return nil, fmt.Errorf("%w: no rule %s", ErrInvalidPolicy, decisionQuery)
	}
	return &compiled{modules: modules, data: data, compiler: c}, nil
}

// checkConfig refuses a data.custos.config that is present but not an
// object. A missing one is left missing: the rules themselves deny every
// event without settings (docs/policies.md, "Settings"), so a set loaded here
// decides as it would under plain OPA.
func checkConfig(data map[string]any) error {
	node, path := data, "data"
	for _, key := range []string{"custos", "config"} {
		path += "." + key
		v, present := node[key]
		if !present {
			return nil
		}
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s is not an object", path)
		}
		node = obj
	}
	return nil
}

func newCompiler() *ast.Compiler {
	return ast.NewCompiler().
		WithStrict(true).
		WithCapabilities(capabilities()).
		WithDefaultRegoVersion(ast.RegoV1)
}

// capabilities are OPA's built-ins without those that reach the network or
// whose result is not a function of their arguments (http.send, net.*,
// opa.runtime, time.now_ns, rand.*, uuid.*, ...): a policy decides from its
// input and data alone, so it can neither leak an input nor decide
// differently on replay. A set that calls one is refused when it compiles,
// naming it ("undefined function http.send"). Time comes from input.now.
func capabilities() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	kept := caps.Builtins[:0]
	for _, b := range caps.Builtins {
		if b.Nondeterministic || strings.HasPrefix(b.Name, "net.") || b.Name == "opa.runtime" {
			continue
		}
		kept = append(kept, b)
	}
	caps.Builtins = kept
	caps.AllowNet = []string{}
	return caps
}

// Excluded reports whether the built-in name is one a policy may not call.
func Excluded(name string) bool {
	for _, b := range capabilities().Builtins {
		if b.Name == name {
			return false
		}
	}
	return true
}

// dataValue is the data document as an AST object, so evaluation reads it
// without converting it on every decision.
func (c *compiled) dataValue() (ast.Object, error) {
	v, err := ast.InterfaceToValue(c.data)
	if err != nil {
		return nil, fmt.Errorf("%w: data: %w", ErrInvalidPolicy, err)
	}
	obj, ok := v.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("%w: data is not an object", ErrInvalidPolicy)
	}
	return obj, nil
}

func lookup(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// Revision identifies the set by its content: "sha256:" and the hex SHA-256
// over its files' paths and contents, in path order.
func (s *Set) Revision() string { return s.revision }

// Config returns a copy of data.custos.config, the set's tunable facts
// (docs/policies.md). Numbers are json.Number.
func (s *Set) Config() map[string]any {
	if s.config == nil {
		return map[string]any{}
	}
	return deepCopy(s.config).(map[string]any)
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = deepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = deepCopy(e)
		}
		return out
	}
	return v
}

// Decide evaluates the set against in. It never fails: an evaluation error or
// a result that is not a well-formed decision is a deny with POLICY_ERROR.
// The returned decision carries the set's revision.
func (s *Set) Decide(ctx context.Context, in *Input) Decision {
	d, _ := s.DecideWithin(ctx, in, 0)
	return d
}

// DecideWithin is Decide with a deadline on the evaluation (none when
// deadline is zero): a policy still evaluating when it passes is stopped,
// and the decision is a POLICY_ERROR deny. timedOut reports that case.
func (s *Set) DecideWithin(ctx context.Context, in *Input, deadline time.Duration) (d Decision, timedOut bool) {
	d, timedOut = s.decide(ctx, in, deadline)
	d.PolicyRevision = s.revision
	return d, timedOut
}

func (s *Set) decide(ctx context.Context, in *Input, deadline time.Duration) (Decision, bool) {
	cancel := s.noCancel
	if deadline > 0 {
		c := topdown.NewCancel()
		t := time.AfterFunc(deadline, c.Cancel)
		defer t.Stop()
		cancel = c
	}
	d, err := s.eval(ctx, in, cancel)
	if err != nil && cancel.Cancelled() {
		return policyError(fmt.Sprintf("policy evaluation exceeded its deadline of %s", deadline)), true
	}
	if err != nil {
		return policyError(describeEvalError(err)), false
	}
	return d, false
}

func (s *Set) eval(ctx context.Context, in *Input, cancel topdown.Cancel) (Decision, error) {
	if in == nil {
		return policyError("no input"), nil
	}
	if ctx.Err() != nil {
		return policyError("policy evaluation cancelled"), nil
	}
	v, err := s.conv.input(in)
	if err != nil {
		return policyError("the input cannot be given to the policy"), nil
	}
	// The external cancel replaces OPA's watching of ctx, which would start
	// a goroutine per evaluation: the deadline is what stops a policy that
	// never finishes.
	rs, err := s.query.Eval(ctx, rego.EvalParsedInput(v), rego.EvalExternalCancel(cancel), rego.EvalMetrics(s.noMetrics))
	if err != nil {
		return Decision{}, err
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return policyError(decisionQuery + " is undefined"), nil
	}
	d, err := decisionFrom(rs[0].Expressions[0].Value)
	if err != nil {
		return policyError("malformed decision: " + err.Error()), nil
	}
	return d, nil
}

// describeEvalError names the kind and place of an evaluation error but not
// its message, which may quote input values.
func describeEvalError(err error) string {
	var te *topdown.Error
	if errors.As(err, &te) {
		msg := "policy evaluation failed: " + te.Code
		if te.Location != nil {
			msg += " at " + te.Location.String()
		}
		return msg
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "policy evaluation cancelled"
	}
	return "policy evaluation failed"
}

func policyError(message string) Decision {
	return Decision{
		Allow:       false,
		Reasons:     []Reason{{Code: CodePolicyError, Message: message}},
		Obligations: []any{},
	}
}

// decisionFrom checks the shape docs/policy-input.md requires of a result.
func decisionFrom(v any) (Decision, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return Decision{}, errors.New("not an object")
	}
	allow, ok := obj["allow"].(bool)
	if !ok {
		return Decision{}, errors.New("allow is not a boolean")
	}
	d := Decision{Allow: allow, Reasons: []Reason{}, Obligations: []any{}}
	if raw, present := obj["reasons"]; present {
		list, ok := raw.([]any)
		if !ok {
			return Decision{}, errors.New("reasons is not an array")
		}
		for _, r := range list {
			m, ok := r.(map[string]any)
			if !ok {
				return Decision{}, errors.New("a reason is not an object")
			}
			code, _ := m["code"].(string)
			msg, _ := m["message"].(string)
			if code == "" {
				return Decision{}, errors.New("a reason has no code")
			}
			d.Reasons = append(d.Reasons, Reason{Code: code, Message: msg})
		}
	}
	if raw, present := obj["obligations"]; present {
		list, ok := raw.([]any)
		if !ok {
			return Decision{}, errors.New("obligations is not an array")
		}
		d.Obligations = list
	}
	for name, field := range map[string]*string{"basis": &d.Basis, "transfer_ground": &d.TransferGround} {
		if raw, present := obj[name]; present {
			s, ok := raw.(string)
			if !ok || s == "" {
				return Decision{}, fmt.Errorf("%s is not a non-empty string", name)
			}
			*field = s
		}
	}
	if allow && len(d.Reasons) > 0 {
		return Decision{}, errors.New("an allowing decision has reasons")
	}
	return d, nil
}

// DefaultDeadline bounds one evaluation. The built-in set decides in well
// under a millisecond, but the deadline is wall time: on a machine whose
// cores are all busy a decision also waits for one, and a legitimate
// decision must not be denied for that (docs/policies.md, "The life of a
// policy set").
const DefaultDeadline = 500 * time.Millisecond

// Engine holds the active set; decisions use whichever set is active when
// they start, and a swap never blocks them. Each evaluation has a deadline.
type Engine struct {
	active   atomic.Pointer[Set]
	deadline time.Duration
	timeouts atomic.Uint64
	mu       sync.Mutex
	recent   [timeoutsForUnready]time.Time // the latest timeouts, a ring
	next     int
}

// EngineOption adjusts an Engine.
type EngineOption func(*Engine)

// WithDeadline sets how long one evaluation may take (DefaultDeadline when
// not set; d must be positive).
func WithDeadline(d time.Duration) EngineOption {
	return func(e *Engine) {
		if d > 0 {
			e.deadline = d
		}
	}
}

// NewEngine returns an engine whose active set is initial. Until a set is
// active (initial nil), every decision is a POLICY_ERROR deny.
func NewEngine(initial *Set, opts ...EngineOption) *Engine {
	e := &Engine{deadline: DefaultDeadline}
	for _, o := range opts {
		o(e)
	}
	e.active.Store(initial)
	return e
}

// Deadline is how long one evaluation may take.
func (e *Engine) Deadline() time.Duration { return e.deadline }

// timeoutsForUnready timeouts within timeoutWindow make the engine
// unhealthy: one slow evaluation is noise, repeated ones are a policy that
// does not finish.
const (
	timeoutsForUnready = 3
	timeoutWindow      = time.Minute
)

// Timeouts is how many evaluations have exceeded the deadline, and whether
// enough did recently for the engine to count as unhealthy at now.
func (e *Engine) Timeouts(now time.Time) (total uint64, repeated bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	oldest := e.recent[e.next]
	return e.timeouts.Load(), !oldest.IsZero() && now.Sub(oldest) < timeoutWindow
}

func (e *Engine) timedOut() {
	e.timeouts.Add(1)
	e.mu.Lock()
	e.recent[e.next] = time.Now()
	e.next = (e.next + 1) % timeoutsForUnready
	e.mu.Unlock()
}

// Active returns the active set.
func (e *Engine) Active() *Set { return e.active.Load() }

// Swap makes s the active set.
func (e *Engine) Swap(s *Set) { e.active.Store(s) }

// Activate makes s the active set unless a set with the same revision is
// already active, and reports whether it did: a watcher's onLoad can call it
// and record custos.policy.activated only for a new revision.
func (e *Engine) Activate(s *Set) bool {
	for {
		old := e.active.Load()
		if old != nil && s != nil && old.Revision() == s.Revision() {
			return false
		}
		if e.active.CompareAndSwap(old, s) {
			return true
		}
	}
}

// Decide decides in with the active set, within the deadline.
func (e *Engine) Decide(ctx context.Context, in *Input) Decision {
	s := e.Active()
	if s == nil {
		return policyError("no active policy set")
	}
	d, timedOut := s.DecideWithin(ctx, in, e.deadline)
	if timedOut {
		e.timedOut()
	}
	return d
}
