package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
)

func inputValue(in *Input) (ast.Value, error) {
	return newConverter(map[string]any{"regions": []any{"CN", "SG"}}).input(in)
}

// jsonValue is the slow, obviously right conversion: the input as
// encoding/json writes it, read back as OPA reads JSON.
func jsonValue(t testing.TB, in *Input) (ast.Value, bool) {
	t.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		return nil, false
	}
	var v any
	if err := util.UnmarshalJSON(b, &v); err != nil {
		t.Fatal(err)
	}
	normalizeLists(v, false)
	av, err := ast.InterfaceToValue(v)
	if err != nil {
		t.Fatal(err)
	}
	return av, true
}

// listKeys are the Input fields that are lists: json.Marshal writes a nil
// slice as null where the contract (and inputValue) has an empty list.
var listKeys = map[string]bool{
	"erased_categories": true, "consents": true, "purposes": true, "categories": true, "destinations": true,
	"recipients": true, "cookies": true, "versions": true,
}

func normalizeLists(v any, inEventData bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if e == nil && listKeys[k] && !inEventData {
				x[k] = []any{}
				continue
			}
			normalizeLists(e, inEventData || k == "data")
		}
	case []any:
		for _, e := range x {
			normalizeLists(e, inEventData)
		}
	}
}

func TestInputValueMatchesJSON(t *testing.T) {
	withdrawn := sgConsent("c-w", func(c *ConsentState) {
		c.Withdrawn, c.WithdrawnAt, c.Expires = true, timep(now.Add(-time.Minute)), nil
		c.WithdrawnScope.Purposes = []string{"notifications"}
	})
	inputs := map[string]*Input{
		"transfer": transferInput(nil, sgConsent("c-1"), withdrawn),
		"minor, nested data": eventInput("privacy.consent.granted", map[string]any{
			"consent_id": "c-9", "guardian": true, "expires": now.Add(time.Hour), "n": 3, "f": 1.5,
			"nested": map[string]any{"list": []any{1, "two", nil, false}}, "strings": []string{"a", "b"},
		}, subject()),
		"empty":                 {},
		"no subject, nil lists": eventInput("privacy.notice.published", nil, SubjectState{Consents: []ConsentState{{}}}),
		"time zone":             eventInput("privacy.data.used", map[string]any{}, subject()),
	}
	inputs["time zone"].Now = now.In(time.FixedZone("CST", 8*3600)).Add(123456789 * time.Nanosecond)
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			got, err := inputValue(in)
			if err != nil {
				t.Fatal(err)
			}
			want, ok := jsonValue(t, in)
			if !ok {
				t.Fatal("not marshalable")
			}
			if in.Event.Data == nil {
				// json.Marshal writes a nil map as null; the policy gets {}.
				want.(ast.Object).Get(ast.StringTerm("event")).Value.(ast.Object).Insert(ast.StringTerm("data"), ast.ObjectTerm())
			}
			if ast.Compare(got, want) != 0 {
				t.Errorf("inputValue:\n%v\njson:\n%v", got, want)
			}
		})
	}
}

func TestInputValueRejectsUnencodableData(t *testing.T) {
	in := eventInput("privacy.data.used", map[string]any{"f": func() {}}, subject())
	if _, err := inputValue(in); err == nil {
		t.Fatal("a function in event data converted")
	}
	s := realSet(t)
	if d := s.Decide(context.Background(), in); d.Allow || codes(d)[0] != CodePolicyError {
		t.Errorf("decision %+v", d)
	}
}

// FuzzInputValue checks the fast conversion against the JSON one, and that a
// decision on any input is well formed.
func FuzzInputValue(f *testing.F) {
	seed, err := json.Marshal(transferInput(nil, sgConsent("c-1")))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"now":"2026-11-29T10:00:00Z","event":{"type":"privacy.data.collected","data":{"categories":["cookie.analytics"],"purpose":"security","storage_region":"US"}},"subject":{"age":3,"consents":[{"destinations":["US"],"expires":"2026-01-01T00:00:00+08:00"}]}}`))
	s := realSet(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var in Input
		if err := json.Unmarshal(b, &in); err != nil {
			return
		}
		got, err := inputValue(&in)
		if err != nil {
			return
		}
		want, ok := jsonValue(t, &in)
		if !ok {
			return
		}
		if in.Event.Data == nil {
			want.(ast.Object).Get(ast.StringTerm("event")).Value.(ast.Object).Insert(ast.StringTerm("data"), ast.ObjectTerm())
		}
		if ast.Compare(got, want) != 0 {
			t.Fatalf("inputValue:\n%v\njson:\n%v", got, want)
		}
		d := s.Decide(context.Background(), &in)
		if d.Reasons == nil || d.Obligations == nil || d.PolicyRevision != s.Revision() {
			t.Fatalf("malformed decision %+v", d)
		}
		if d.Allow == (len(d.Reasons) > 0) {
			t.Fatalf("allow %v with reasons %v", d.Allow, d.Reasons)
		}
		if bytes.Contains(b, []byte("p_secret")) {
			for _, r := range d.Reasons {
				if bytes.Contains([]byte(r.Message), []byte("p_secret")) {
					t.Fatalf("reason quotes the subject: %q", r.Message)
				}
			}
		}
	})
}
