package policy

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// converter builds the AST of an Input directly: the value json.Marshal would
// give, except that absent lists are empty rather than null (the contract of
// docs/policy-input.md). A decision's cost is dominated by allocation, so it
// reuses one immutable term for every key, every vocabulary term and every
// string in the set's data, builds each object's terms in one block, and
// shares the empty list. The terms are never mutated, so one converter serves
// concurrent decisions.
type converter struct {
	terms map[string]*ast.Term

	// The keys of each object of the input, in the order input builds them.
	inputKeys, eventKeys, subjectKeys, consentKeys, scopeKeys, versionKeys, noticesKeys []*ast.Term
	// The withdrawn_scope of a consent nothing was withdrawn from.
	emptyScope ast.Value

	subjects *subjectCache
	notices  atomic.Pointer[cachedNotices]
}

// newConverter interns the input's keys, the event vocabulary and every
// string in data (the regions, purposes and codes the rules compare with).
func newConverter(data any) *converter {
	cv := &converter{terms: map[string]*ast.Term{}, subjects: newSubjectCache(subjectCacheSize)}
	for _, s := range internedStrings() {
		cv.intern(s)
	}
	cv.internData(data)
	keys := func(names ...string) []*ast.Term {
		out := make([]*ast.Term, len(names))
		for i, n := range names {
			out[i] = cv.str(n)
		}
		return out
	}
	cv.inputKeys = keys("now", "event", "subject", "notices")
	cv.eventKeys = keys("type", "source", "id", "time", "data", "subject")
	cv.subjectKeys = keys("registered", "erased", "erased_categories", "last_seq", "consents", "residence", "age")
	cv.consentKeys = keys("consent_id", "notice_version", "purposes", "categories", "destinations", "recipients",
		"cookies", "guardian", "granted_at", "expires", "withdrawn", "withdrawn_at", "withdrawn_scope", "risks_informed")
	cv.scopeKeys = keys("purposes", "destinations", "cookies", "categories")
	cv.versionKeys = keys("version", "effective")
	cv.noticesKeys = keys("versions", "current")
	empty := ast.InternedEmptyArrayValue
	cv.emptyScope = cv.object(cv.scopeKeys, []ast.Value{empty, empty, empty, empty}).Value
	return cv
}

func (cv *converter) intern(s string) {
	if _, ok := cv.terms[s]; !ok {
		cv.terms[s] = ast.StringTerm(s)
	}
}

func (cv *converter) internData(v any) {
	switch x := v.(type) {
	case string:
		cv.intern(x)
	case map[string]any:
		for k, e := range x {
			cv.intern(k)
			cv.internData(e)
		}
	case []any:
		for _, e := range x {
			cv.internData(e)
		}
	}
}

func internedStrings() []string {
	return []string{
		// keys of docs/policy-input.md
		"now", "event", "type", "source", "id", "time", "subject", "data",
		"registered", "residence", "age", "erased", "erased_categories", "last_seq", "consents",
		"consent_id", "notice_version", "purposes", "categories", "destinations", "recipients", "cookies",
		"guardian", "granted_at", "expires", "withdrawn", "withdrawn_at", "withdrawn_scope", "risks_informed",
		"notices", "current", "versions", "version", "effective",
		// keys of event data (docs/schemas/)
		"fields", "purpose", "storage_region", "retention", "recipient", "recipient_kind", "basis", "region",
		"transfer_id", "from_region", "to_region", "mechanism", "request_id", "right", "details", "outcome",
		"reason", "scope", "changes", "method",
		// vocabulary (docs/schemas/)
		"privacy.subject.registered", "privacy.notice.published", "privacy.consent.granted",
		"privacy.consent.withdrawn", "privacy.data.collected", "privacy.data.used", "privacy.data.shared",
		"privacy.data.transferred", "privacy.rights.requested", "privacy.rights.completed",
		"privacy.data.corrected", "privacy.data.erased",
		"identity.basic", "identity.contact", "identity.account", "identity.voluntary",
		"usage.device", "usage.network", "usage.behavior", "usage.diagnostic",
		"cookie.session", "cookie.preference", "cookie.security", "cookie.analytics",
		"service_provision", "service_improvement", "notifications", "interactive_features",
		"customer_support", "security", "legal_compliance",
		"affiliate", "service_provider", "third_party", "authority", "consent", "legal_obligation", "anonymized",
		"security_assessment", "standard_contract", "certification",
		"access", "correction", "deletion", "portability", "complaint",
		"fulfilled", "rejected", "request", "all",
	}
}

func (cv *converter) str(s string) *ast.Term {
	if t, ok := cv.terms[s]; ok {
		return t
	}
	return ast.StringTerm(s)
}

// object builds an object from keys and values in one block of terms.
func (cv *converter) object(keys []*ast.Term, values []ast.Value) *ast.Term {
	terms := make([]ast.Term, len(values)+1)
	pairs := make([][2]*ast.Term, len(values))
	for i, v := range values {
		terms[i].Value = v
		pairs[i] = [2]*ast.Term{keys[i], &terms[i]}
	}
	obj := &terms[len(values)]
	obj.Value = ast.NewObject(pairs...)
	return obj
}

func (cv *converter) list(list []string) ast.Value {
	if len(list) == 0 {
		return ast.InternedEmptyArrayValue
	}
	terms := make([]*ast.Term, len(list))
	for i, s := range list {
		terms[i] = cv.str(s)
	}
	return ast.NewArray(terms...)
}

// times formats times as encoding/json does, into one buffer shared by all.
type times struct{ buf []byte }

// span is where a formatted time is in the buffer; the zero span is a time
// that is absent (null).
type span struct{ start, end int }

func (ts *times) add(t time.Time) span {
	start := len(ts.buf)
	ts.buf = t.AppendFormat(ts.buf, time.RFC3339Nano)
	return span{start, len(ts.buf)}
}

func (ts *times) addOptional(t *time.Time) span {
	if t == nil {
		return span{}
	}
	return ts.add(*t)
}

// valuer returns the value of a span: a string sliced from one copy of the
// buffer, or null for the zero span.
func (ts *times) valuer() func(span) ast.Value {
	all := string(ts.buf)
	return func(sp span) ast.Value {
		if sp.end == 0 {
			return ast.NullValue
		}
		return ast.String(all[sp.start:sp.end])
	}
}

func (cv *converter) input(in *Input) (ast.Value, error) {
	data := ast.InternedEmptyObjectValue
	if in.Event.Data != nil {
		var err error
		if data, err = cv.value(in.Event.Data); err != nil {
			return nil, err
		}
	}
	ts := &times{buf: make([]byte, 0, 72)}
	nowAt, eventAt := ts.add(in.Now), ts.add(in.Event.Time)
	all := string(ts.buf)

	// Optional fields come last in the key lists, so an object without them
	// uses a prefix of the shared list (never appended to).
	eventValues := []ast.Value{cv.str(in.Event.Type).Value, cv.str(in.Event.Source).Value, ast.String(in.Event.ID),
		ast.String(all[eventAt.start:eventAt.end]), data, nil}
	if in.Event.Subject != "" {
		eventValues[5] = ast.String(in.Event.Subject)
	} else {
		eventValues = eventValues[:5]
	}
	return cv.object(cv.inputKeys, []ast.Value{
		ast.String(all[nowAt.start:nowAt.end]),
		cv.object(cv.eventKeys, eventValues).Value,
		cv.subjects.get(in.Event.Subject, &in.Subject, cv.subject),
		cv.noticesValue(&in.Notices),
	}).Value, nil
}

// subject converts a subject's state. A subject's state changes only when
// an event of theirs is appended, so decisions reuse the conversion
// (subjectCache) until it does.
func (cv *converter) subject(s *SubjectState) ast.Value {
	ts := &times{buf: make([]byte, 0, 36*3*len(s.Consents))}
	consentAt := make([][3]span, len(s.Consents))
	for i := range s.Consents {
		c := &s.Consents[i]
		consentAt[i] = [3]span{ts.add(c.GrantedAt), ts.addOptional(c.Expires), ts.addOptional(c.WithdrawnAt)}
	}
	timeAt := ts.valuer()
	consents := make([]*ast.Term, len(s.Consents))
	for i := range s.Consents {
		c, at := &s.Consents[i], consentAt[i]
		scope, ws := cv.emptyScope, &c.WithdrawnScope
		if len(ws.Purposes)+len(ws.Destinations)+len(ws.Cookies)+len(ws.Categories) > 0 {
			scope = cv.object(cv.scopeKeys, []ast.Value{
				cv.list(ws.Purposes), cv.list(ws.Destinations), cv.list(ws.Cookies), cv.list(ws.Categories),
			}).Value
		}
		consents[i] = cv.object(cv.consentKeys, []ast.Value{
			ast.String(c.ConsentID), cv.str(c.NoticeVersion).Value,
			cv.list(c.Purposes), cv.list(c.Categories), cv.list(c.Destinations), cv.list(c.Recipients), cv.list(c.Cookies),
			ast.InternedValue(c.Guardian), timeAt(at[0]), timeAt(at[1]), ast.InternedValue(c.Withdrawn), timeAt(at[2]),
			scope, ast.InternedValue(c.RisksInformed),
		})
	}
	subject := objectBuilder{
		keys: append(make([]*ast.Term, 0, 7), cv.subjectKeys[:5]...),
		values: []ast.Value{ast.InternedValue(s.Registered), ast.InternedValue(s.Erased), cv.list(s.ErasedCategories),
			ast.InternedValue(s.LastSeq), ast.NewArray(consents...), nil, nil}[:5],
	}
	if s.Residence != "" {
		subject.add(cv.subjectKeys[5], cv.str(s.Residence).Value)
	}
	if s.Age != nil {
		subject.add(cv.subjectKeys[6], ast.InternedValue(*s.Age))
	}
	return cv.object(subject.keys, subject.values).Value
}

// noticesValue converts the notice history, which changes only when a
// notice is published: the last conversion is reused while it is the same.
func (cv *converter) noticesValue(n *Notices) ast.Value {
	if c := cv.notices.Load(); c != nil && c.n.Current == n.Current && slices.Equal(c.n.Versions, n.Versions) {
		return c.v
	}
	ts := &times{buf: make([]byte, 0, 36*len(n.Versions))}
	effectiveAt := make([]span, len(n.Versions))
	for i, v := range n.Versions {
		effectiveAt[i] = ts.add(v.Effective)
	}
	timeAt := ts.valuer()
	versions := make([]*ast.Term, len(n.Versions))
	for i, v := range n.Versions {
		versions[i] = cv.object(cv.versionKeys, []ast.Value{cv.str(v.Version).Value, timeAt(effectiveAt[i])})
	}
	noticeValues := []ast.Value{ast.NewArray(versions...), nil}
	if n.Current != "" {
		noticeValues[1] = cv.str(n.Current).Value
	} else {
		noticeValues = noticeValues[:1]
	}
	v := cv.object(cv.noticesKeys, noticeValues).Value
	cv.notices.Store(&cachedNotices{n: Notices{Current: n.Current, Versions: slices.Clone(n.Versions)}, v: v})
	return v
}

type cachedNotices struct {
	n Notices
	v ast.Value
}

// objectBuilder collects an object whose optional fields are not a prefix of
// its keys; its slices are made with room for them.
type objectBuilder struct {
	keys   []*ast.Term
	values []ast.Value
}

func (b *objectBuilder) add(key *ast.Term, v ast.Value) {
	b.keys = append(b.keys, key)
	b.values = append(b.values, v)
}

var errUnencodable = errors.New("a value cannot be encoded as JSON")

// value converts event data, interning strings; types other than the JSON
// ones and their common Go forms take OPA's JSON round trip.
func (cv *converter) value(v any) (ast.Value, error) {
	switch x := v.(type) {
	case nil:
		return ast.NullValue, nil
	case string:
		return cv.str(x).Value, nil
	case bool:
		return ast.InternedValue(x), nil
	case int:
		return ast.InternedValue(x), nil
	case int64:
		return ast.InternedValue(x), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, errUnencodable
		}
		return ast.InterfaceToValue(x)
	case json.Number:
		return ast.InterfaceToValue(x)
	case []string:
		return cv.list(x), nil
	case []any:
		if len(x) == 0 {
			return ast.InternedEmptyArrayValue, nil
		}
		terms := make([]ast.Term, len(x))
		ptrs := make([]*ast.Term, len(x))
		for i, e := range x {
			ev, err := cv.value(e)
			if err != nil {
				return nil, err
			}
			terms[i].Value = ev
			ptrs[i] = &terms[i]
		}
		return ast.NewArray(ptrs...), nil
	case map[string]any:
		terms := make([]ast.Term, len(x))
		pairs := make([][2]*ast.Term, 0, len(x))
		for k, e := range x {
			ev, err := cv.value(e)
			if err != nil {
				return nil, err
			}
			t := &terms[len(pairs)]
			t.Value = ev
			pairs = append(pairs, [2]*ast.Term{cv.str(k), t})
		}
		return ast.NewObject(pairs...), nil
	default:
		return ast.InterfaceToValue(x)
	}
}
