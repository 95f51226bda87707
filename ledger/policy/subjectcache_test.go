package policy

import (
	"reflect"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Every field of a subject's state takes part in the cache's comparison:
// changing any one of them, anywhere in the state, is a miss. A field added
// to SubjectState or ConsentState later without being compared fails here.
func TestSubjectCacheComparesEveryField(t *testing.T) {
	base := subject(sgConsent("c-1", func(c *ConsentState) {
		c.WithdrawnScope.Cookies = []string{"cookie.analytics"}
		c.WithdrawnAt = timep(granted)
	}))
	var paths []string
	mutations := mutate(reflect.ValueOf(&base).Elem(), "subject", &paths)
	if len(mutations) < 20 {
		t.Fatalf("only %d fields mutated: %v", len(mutations), paths)
	}
	for i, m := range mutations {
		changed := cloneSubject(&base)
		m(reflect.ValueOf(&changed).Elem())
		if equalSubject(&base, &changed) {
			t.Errorf("%s: a change is not seen by the comparison", paths[i])
		}
		if !equalSubject(&base, ptr(cloneSubject(&base))) {
			t.Fatal("a clone differs from its original")
		}
	}
}

func ptr[T any](v T) *T { return &v }

// mutate returns, for every leaf field under v, a function that changes that
// field in a value of the same shape.
func mutate(v reflect.Value, path string, paths *[]string) []func(reflect.Value) {
	var out []func(reflect.Value)
	add := func(p string, f func(reflect.Value)) {
		*paths = append(*paths, p)
		out = append(out, f)
	}
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			add(path, func(w reflect.Value) { w.Set(reflect.ValueOf(w.Interface().(time.Time).Add(time.Second))) })
			return out
		}
		for i := 0; i < v.NumField(); i++ {
			i := i
			for _, f := range mutate(v.Field(i), path+"."+v.Type().Field(i).Name, paths) {
				out = append(out, func(w reflect.Value) { f(w.Field(i)) })
			}
		}
	case reflect.Pointer:
		add(path+"=nil", func(w reflect.Value) {
			if w.IsNil() {
				w.Set(reflect.New(w.Type().Elem()))
			} else {
				w.Set(reflect.Zero(w.Type()))
			}
		})
		if !v.IsNil() {
			for _, f := range mutate(v.Elem(), path+"*", paths) {
				out = append(out, func(w reflect.Value) { f(w.Elem()) })
			}
		}
	case reflect.Slice:
		add(path+"+", func(w reflect.Value) { w.Set(reflect.Append(w, reflect.Zero(w.Type().Elem()))) })
		for j := 0; j < v.Len(); j++ {
			j := j
			for _, f := range mutate(v.Index(j), path+"["+string(rune('0'+j))+"]", paths) {
				out = append(out, func(w reflect.Value) { f(w.Index(j)) })
			}
		}
	case reflect.String:
		add(path, func(w reflect.Value) { w.SetString(w.String() + "x") })
	case reflect.Bool:
		add(path, func(w reflect.Value) { w.SetBool(!w.Bool()) })
	case reflect.Int:
		add(path, func(w reflect.Value) { w.SetInt(w.Int() + 1) })
	case reflect.Uint64:
		add(path, func(w reflect.Value) { w.SetUint(w.Uint() + 1) })
	default:
		panic("mutate: unhandled kind " + v.Kind().String() + " at " + path)
	}
	return out
}

// A cached conversion is the conversion: deciding with a cache hit gives
// the value a fresh conversion gives, and a changed state is converted anew.
func TestSubjectCacheHitIsTheSameValue(t *testing.T) {
	s := realSet(t)
	in := transferInput(nil, sgConsent("c-1"))
	first, err := s.conv.input(in)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.conv.input(in)
	if err != nil {
		t.Fatal(err)
	}
	fresh := newConverter(nil)
	want, err := fresh.input(in)
	if err != nil {
		t.Fatal(err)
	}
	if first.Compare(want) != 0 || again.Compare(want) != 0 {
		t.Fatal("a cached conversion differs from a fresh one")
	}
	in.Subject.Consents[len(in.Subject.Consents)-1].Withdrawn = true
	changed, err := s.conv.input(in)
	if err != nil {
		t.Fatal(err)
	}
	last := len(in.Subject.Consents) - 1
	got, err := changed.(ast.Object).Find(ast.Ref{ast.StringTerm("subject"), ast.StringTerm("consents"), ast.InternedTerm(last), ast.StringTerm("withdrawn")})
	if err != nil || got.Compare(ast.Boolean(true)) != 0 {
		t.Fatalf("after a withdrawal the converted state says %v (%v)", got, err)
	}
}
