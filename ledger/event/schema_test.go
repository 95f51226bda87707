package event

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The JSON Schemas in docs/schemas are published for emitters; these tests
// keep them and the Go model saying the same thing.

const schemaDir = "../../docs/schemas"

func loadJSON(t *testing.T, path string) any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// compileSchemas compiles every schema under its $id, with format
// assertions on (2020-12 leaves them off by default).
func compileSchemas(t *testing.T) map[string]*jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	// The event schemas: one per type and the envelope's (the directory
	// also holds documents of the API, such as the export's).
	files, err := filepath.Glob(filepath.Join(schemaDir, "privacy.*.schema.json"))
	files = append(files, filepath.Join(schemaDir, "cloudevent.schema.json"))
	if err != nil || len(files) != len(Types())+1 {
		t.Fatalf("want %d schema files, found %d (%v)", len(Types())+1, len(files), err)
	}
	ids := map[string]string{}
	for _, f := range files {
		doc := loadJSON(t, f)
		obj, ok := doc.(map[string]any)
		if !ok {
			t.Fatalf("%s is not an object", f)
		}
		id, _ := obj["$id"].(string)
		name := strings.TrimSuffix(filepath.Base(f), ".schema.json")
		if id != "https://custos.dev/schemas/"+filepath.Base(f) {
			t.Errorf("%s: $id = %q", f, id)
		}
		if obj["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
			t.Errorf("%s: $schema = %v", f, obj["$schema"])
		}
		if err := c.AddResource(id, doc); err != nil {
			t.Fatal(err)
		}
		ids[name] = id
	}
	out := map[string]*jsonschema.Schema{}
	for name, id := range ids {
		s, err := c.Compile(id)
		if err != nil {
			t.Fatalf("compile %s: %v", name, err)
		}
		out[name] = s
	}
	return out
}

func TestSchemasAcceptTheExamples(t *testing.T) {
	schemas := compileSchemas(t)
	files, _ := filepath.Glob(filepath.Join("testdata", "valid", "*.json"))
	for _, f := range files {
		doc := loadJSON(t, f)
		typ, _ := doc.(map[string]any)["type"].(string)
		s := schemas[typ]
		if s == nil {
			t.Errorf("%s: no schema for type %q", f, typ)
			continue
		}
		if err := s.Validate(doc); err != nil {
			t.Errorf("%s does not match its schema: %v", f, err)
		}
		if err := schemas["cloudevent"].Validate(doc); err != nil {
			t.Errorf("%s does not match the envelope schema: %v", f, err)
		}
		// Every other type's schema refuses it: the type is pinned.
		for other, s := range schemas {
			if other != typ && other != "cloudevent" && s.Validate(doc) == nil {
				t.Errorf("%s matches the schema of %s", f, other)
			}
		}
	}
}

// TestSchemasRefuseWhatDecodeRefuses checks a sample of invalid events
// against the schemas; the schemas cannot express everything Decode checks
// (byte lengths, time relations, the birth date's range), so the sample
// keeps to what they can.
func TestSchemasRefuseWhatDecodeRefuses(t *testing.T) {
	schemas := compileSchemas(t)
	b, err := os.ReadFile(filepath.Join("testdata", "valid", "07-privacy.data.transferred.json"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	for name, edit := range map[string]func(m map[string]any){
		"region ZZ":          func(m map[string]any) { m["data"].(map[string]any)["to_region"] = "ZZ" },
		"region lower case":  func(m map[string]any) { m["data"].(map[string]any)["from_region"] = "cn" },
		"unknown data field": func(m map[string]any) { m["data"].(map[string]any)["to_regoin"] = "SG" },
		"unknown attribute":  func(m map[string]any) { m["partitionkey"] = "p" },
		"no subject":         func(m map[string]any) { delete(m, "subject") },
		"no transfer_id":     func(m map[string]any) { delete(m["data"].(map[string]any), "transfer_id") },
		"bad mechanism":      func(m map[string]any) { m["data"].(map[string]any)["mechanism"] = "adequacy" },
		"duplicate category": func(m map[string]any) {
			m["data"].(map[string]any)["categories"] = []any{"usage.device", "usage.device"}
		},
		"empty categories":  func(m map[string]any) { m["data"].(map[string]any)["categories"] = []any{} },
		"specversion 0.3":   func(m map[string]any) { m["specversion"] = "0.3" },
		"custos type":       func(m map[string]any) { m["type"] = "custos.decision.denied" },
		"time not RFC 3339": func(m map[string]any) { m["time"] = "yesterday" },
		"text content type": func(m map[string]any) { m["datacontenttype"] = "text/plain" },
	} {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		body, _ := json.Marshal(m)
		if _, err := Decode(body, now); err == nil {
			t.Errorf("%s: Decode accepted it", name)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if schemas[TypeDataTransferred].Validate(doc) == nil {
			t.Errorf("%s: the schema accepted it", name)
		}
	}
	for name, tc := range map[string]struct{ typ, data string }{
		"scope word":           {TypeDataErased, `{"scope":"everything","reason":"request"}`},
		"age and birth date":   {TypeSubjectRegistered, `{"residence":"CN","birth_date":"2010-01-01","age":16}`},
		"consent_id and scope": {TypeConsentWithdrawn, `{"consent_id":"c-1","purposes":["security"]}`},
		"retention P":          {TypeDataCollected, `{"categories":["usage.device"],"purpose":"security","storage_region":"CN","retention":"P"}`},
		"retention PT":         {TypeDataCollected, `{"categories":["usage.device"],"purpose":"security","storage_region":"CN","retention":"PT"}`},
		"retention P1DT":       {TypeDataCollected, `{"categories":["usage.device"],"purpose":"security","storage_region":"CN","retention":"P1DT"}`},
		"retention weeks+days": {TypeDataCollected, `{"categories":["usage.device"],"purpose":"security","storage_region":"CN","retention":"P1W1D"}`},
		"field name":           {TypeDataCorrected, `{"categories":["usage.device"],"fields":{"Email":"x"}}`},
		"field value object":   {TypeDataCorrected, `{"categories":["usage.device"],"fields":{"email":{}}}`},
		"cookie not cookie":    {TypeConsentWithdrawn, `{"cookies":["usage.device"]}`},
	} {
		body := `{"specversion":"1.0","id":"e","source":"https://shop.example.cn","type":"` + tc.typ +
			`","subject":"user-1001","time":"2026-11-29T09:00:00Z","datacontenttype":"application/json","data":` + tc.data + `}`
		if _, err := Decode([]byte(body), now); err == nil {
			t.Errorf("%s: Decode accepted it", name)
		}
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if schemas[tc.typ].Validate(doc) == nil {
			t.Errorf("%s: the schema accepted it", name)
		}
	}
}

// TestSchemasMatchTheGoModel checks each type schema lists exactly the data
// members of the Go struct (by JSON tag) and requires exactly the members
// Decode requires, and that the shared vocabularies are the Go ones.
func TestSchemasMatchTheGoModel(t *testing.T) {
	for _, typ := range Types() {
		doc := loadJSON(t, filepath.Join(schemaDir, typ+".schema.json")).(map[string]any)
		if doc["title"] != typ {
			t.Errorf("%s: title %v", typ, doc["title"])
		}
		props := doc["properties"].(map[string]any)
		if c := props["type"].(map[string]any)["const"]; c != typ {
			t.Errorf("%s: type const %v", typ, c)
		}
		data := props["data"].(map[string]any)
		var schemaFields []string
		for k := range data["properties"].(map[string]any) {
			schemaFields = append(schemaFields, k)
		}
		slices.Sort(schemaFields)

		p := newPayload(typ)
		var goFields []string
		rt := reflect.TypeOf(p).Elem()
		for i := range rt.NumField() {
			tag, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
			goFields = append(goFields, tag)
		}
		slices.Sort(goFields)
		if !slices.Equal(schemaFields, goFields) {
			t.Errorf("%s: schema fields %v, Go fields %v", typ, schemaFields, goFields)
		}

		var schemaReq, goReq []string
		if r, ok := data["required"].([]any); ok {
			for _, v := range r {
				schemaReq = append(schemaReq, v.(string))
			}
		}
		for _, b := range p.bindings() {
			if b.required {
				goReq = append(goReq, b.name)
			}
		}
		slices.Sort(schemaReq)
		slices.Sort(goReq)
		if !slices.Equal(schemaReq, goReq) {
			t.Errorf("%s: schema requires %v, Decode requires %v", typ, schemaReq, goReq)
		}
		if data["additionalProperties"] != false {
			t.Errorf("%s: data admits additional properties", typ)
		}
	}

	env := loadJSON(t, filepath.Join(schemaDir, "cloudevent.schema.json")).(map[string]any)
	defs := env["$defs"].(map[string]any)
	for name, want := range map[string][]string{
		"region": Regions(), "category": Categories(), "cookieCategory": CookieClasses(),
		"purpose": Purposes(), "recipientKind": RecipientKinds(), "basis": Bases(),
		"mechanism": Mechanisms(), "right": Rights(), "outcome": Outcomes(),
		"erasureReason": ErasureReasons(),
	} {
		var got []string
		for _, v := range defs[name].(map[string]any)["enum"].([]any) {
			got = append(got, v.(string))
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("$defs/%s = %v, want %v", name, got, want)
		}
	}
	var types []string
	for _, v := range env["properties"].(map[string]any)["type"].(map[string]any)["enum"].([]any) {
		types = append(types, v.(string))
	}
	slices.Sort(types)
	if !slices.Equal(types, Types()) {
		t.Errorf("envelope types %v", types)
	}
	var attrs []string
	for k := range env["properties"].(map[string]any) {
		attrs = append(attrs, k)
	}
	slices.Sort(attrs)
	var goAttrs []string
	rt := reflect.TypeOf(Event{})
	for i := range rt.NumField() {
		tag, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		goAttrs = append(goAttrs, tag)
	}
	slices.Sort(goAttrs)
	if !slices.Equal(attrs, goAttrs) {
		t.Errorf("envelope attributes %v, Go %v", attrs, goAttrs)
	}
}

// TestSchemaDurationPattern keeps the schema's duration pattern and
// ParseDuration in agreement on a table of inputs.
func TestSchemaDurationPattern(t *testing.T) {
	c := jsonschema.NewCompiler()
	env := loadJSON(t, filepath.Join(schemaDir, "cloudevent.schema.json"))
	if err := c.AddResource("https://custos.dev/schemas/cloudevent.schema.json", env); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("https://custos.dev/schemas/cloudevent.schema.json#/$defs/duration")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{
		"P1Y2M3DT4H5M6S", "P2W", "PT0.5S", "PT1,25S", "P0D", "P01D", "P999999999Y",
		"", "P", "PT", "P1DT", "-P1D", "p1d", "P1.5D", "P1W1D", "P1WT1H", "P1D1Y", "P1234567890D",
		"PT1.1234567890123456789S", "P1Y2M3DT4H5M6S7", "PT.5S",
	} {
		_, perr := ParseDuration(in)
		serr := s.Validate(in)
		if (perr == nil) != (serr == nil) {
			t.Errorf("%q: ParseDuration %v, schema %v", in, perr, serr)
		}
	}
}
