package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"custos.dev/ledger/keys/keyserver"
	"custos.dev/ledger/policy"
	"custos.dev/services/app"
)

// docs/openapi.yaml is the contract client programs are generated from.
// These tests hold the running server to it: every route the server
// registers is described and every described operation is registered, with
// the role the server enforces and the parameter names its handlers read;
// and every answer a realistic scenario provokes has a documented status and
// content type, and a body that validates against the documented schema.
//
// OpenAPI 3.1 schema objects are JSON Schema 2020-12, so the conversion is
// only a matter of addressing: the components' schemas and every request
// and response schema become $defs of one resource, their references are
// rewritten to match, and the event and export schemas of docs/schemas are
// loaded under their $id, which is where the relative references of the
// document point when it is given the base https://custos.dev/openapi.yaml.

const (
	oaSpecPath  = "../../docs/openapi.yaml"
	oaSchemaDir = "../../docs/schemas"
	oaServerDir = "../server"
	oaBase      = "https://custos.dev/openapi.yaml"
)

// oaSpec is the API description, compiled.
type oaSpec struct {
	ops     map[string]*oaOp              // by "METHOD /path/{template}"
	schemas map[string]*jsonschema.Schema // components.schemas by name
	codes   []string                      // the ErrorCode enum
	samples map[string][]any              // components.schemas' examples by name
	seen    map[string]bool               // error codes answered so far
}

// oaOp is one operation.
type oaOp struct {
	key, id, role string
	params        map[string]string                        // name -> in
	responses     map[string]map[string]*jsonschema.Schema // status -> media type -> schema
	requests      map[string]*jsonschema.Schema            // media type -> schema
	seen          map[int]bool                             // statuses answered so far
}

func oaLoad(t *testing.T) *oaSpec {
	t.Helper()
	raw, err := os.ReadFile(oaSpecPath)
	if err != nil {
		t.Fatal(err)
	}
	var y any
	if err := yaml.Unmarshal(raw, &y); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	j, err := json.Marshal(y)
	if err != nil {
		t.Fatalf("openapi.yaml is not JSON-compatible: %v", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	root, _ := doc.(map[string]any)
	if v, _ := root["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		t.Fatalf("openapi version %q, want 3.1.x", v)
	}
	comps := oaObj(t, root, "components")

	c := jsonschema.NewCompiler()
	c.AssertFormat()
	files, err := filepath.Glob(filepath.Join(oaSchemaDir, "*.schema.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no schemas in %s: %v", oaSchemaDir, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		id, _ := v.(map[string]any)["$id"].(string)
		if err := c.AddResource(id, v); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}

	spec := &oaSpec{ops: map[string]*oaOp{}, schemas: map[string]*jsonschema.Schema{}, seen: map[string]bool{}, samples: map[string][]any{}}
	defs := map[string]any{}
	for name, s := range oaObj(t, comps, "schemas") {
		defs[name] = oaRewrite(t, s)
		if ex, ok := s.(map[string]any)["examples"].([]any); ok {
			spec.samples[name] = ex
		}
	}
	type pending struct {
		into map[string]*jsonschema.Schema
		key  string
		def  string
	}
	var todo []pending
	n := 0
	addSchema := func(into map[string]*jsonschema.Schema, key string, s any) {
		n++
		def := fmt.Sprintf("inline-%d", n)
		defs[def] = oaRewrite(t, s)
		todo = append(todo, pending{into, key, def})
	}
	for path, item := range oaObj(t, root, "paths") {
		for method, o := range item.(map[string]any) {
			o := o.(map[string]any)
			op := &oaOp{
				key: strings.ToUpper(method) + " " + path, params: map[string]string{},
				responses: map[string]map[string]*jsonschema.Schema{}, requests: map[string]*jsonschema.Schema{}, seen: map[int]bool{},
			}
			op.id, _ = o["operationId"].(string)
			op.role, _ = o["x-custos-role"].(string)
			if ps, ok := o["parameters"].([]any); ok {
				for _, p := range ps {
					p := oaDeref(t, root, p)
					op.params[p["name"].(string)] = p["in"].(string)
				}
			}
			if rb, ok := o["requestBody"]; ok {
				for media, m := range oaObj(t, oaDeref(t, root, rb), "content") {
					addSchema(op.requests, media, m.(map[string]any)["schema"])
				}
			}
			for status, r := range oaObj(t, o, "responses") {
				r := oaDeref(t, root, r)
				byMedia := map[string]*jsonschema.Schema{}
				op.responses[status] = byMedia
				content, _ := r["content"].(map[string]any)
				for media, m := range content {
					s, ok := m.(map[string]any)["schema"]
					if !ok {
						t.Fatalf("%s %s %s: no schema", op.key, status, media)
					}
					addSchema(byMedia, media, s)
				}
			}
			spec.ops[op.key] = op
		}
	}
	if err := c.AddResource(oaBase, map[string]any{"$id": oaBase, "$defs": defs}); err != nil {
		t.Fatal(err)
	}
	compile := func(def string) *jsonschema.Schema {
		s, err := c.Compile(oaBase + "#/$defs/" + def)
		if err != nil {
			t.Fatalf("compile %s: %v", def, err)
		}
		return s
	}
	for name := range oaObj(t, comps, "schemas") {
		spec.schemas[name] = compile(name)
	}
	for _, p := range todo {
		p.into[p.key] = compile(p.def)
	}
	for _, v := range oaObj(t, oaObj(t, comps, "schemas"), "ErrorCode")["enum"].([]any) {
		spec.codes = append(spec.codes, v.(string))
	}
	return spec
}

func oaObj(t *testing.T, m map[string]any, key string) map[string]any {
	t.Helper()
	v, ok := m[key].(map[string]any)
	if !ok {
		t.Fatalf("openapi: %q is not an object", key)
	}
	return v
}

// oaDeref follows a $ref to #/components/... (parameters, responses,
// request bodies are not schemas, so they are resolved here).
func oaDeref(t *testing.T, root map[string]any, v any) map[string]any {
	t.Helper()
	m, _ := v.(map[string]any)
	ref, ok := m["$ref"].(string)
	if !ok {
		return m
	}
	var cur any = root
	for _, tok := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		cur = cur.(map[string]any)[tok]
	}
	if cur == nil {
		t.Fatalf("openapi: dangling %s", ref)
	}
	return oaDeref(t, root, cur)
}

// oaRewrite copies a schema object with its references made to fit the
// compiled resource: component schemas become $defs, relative files become
// absolute under the document's base.
func oaRewrite(t *testing.T, v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			if ref, ok := x.(string); ok && k == "$ref" {
				out[k] = oaRef(t, ref)
				continue
			}
			out[k] = oaRewrite(t, x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = oaRewrite(t, x)
		}
		return out
	}
	return v
}

func oaRef(t *testing.T, ref string) string {
	if name, ok := strings.CutPrefix(ref, "#/components/schemas/"); ok {
		return "#/$defs/" + name
	}
	if strings.HasPrefix(ref, "#") {
		t.Fatalf("openapi: schema reference %s outside components/schemas", ref)
	}
	base, _ := url.Parse(oaBase)
	r, err := url.Parse(ref)
	if err != nil {
		t.Fatalf("openapi: bad $ref %q", ref)
	}
	return base.ResolveReference(r).String()
}

// problems says what in an answer the spec does not describe; nil when it
// all is.
func (s *oaSpec) problems(key string, status int, contentType string, body []byte) []string {
	op := s.ops[key]
	if op == nil {
		return []string{key + " is not in the spec"}
	}
	resp, ok := op.responses[strconv.Itoa(status)]
	if !ok {
		return []string{fmt.Sprintf("status %d is not documented", status)}
	}
	if len(resp) == 0 {
		if len(body) > 0 {
			return []string{fmt.Sprintf("status %d is documented without a body", status)}
		}
		return nil
	}
	media, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return []string{fmt.Sprintf("Content-Type %q: %v", contentType, err)}
	}
	sch, ok := resp[media]
	if !ok {
		return []string{fmt.Sprintf("content type %s is not documented for status %d", media, status)}
	}
	return oaValidate(sch, media, body)
}

// oaValidate validates a body of a media type: JSON as a whole, NDJSON line
// by line, text as one string.
func oaValidate(sch *jsonschema.Schema, media string, body []byte) []string {
	var out []string
	check := func(what string, b []byte) {
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			out = append(out, what+": not JSON: "+err.Error())
			return
		}
		if err := sch.Validate(v); err != nil {
			out = append(out, what+": "+err.Error())
		}
	}
	switch {
	case media == "application/json", media == "application/ld+json":
		check("body", body)
	case media == "application/x-ndjson":
		for i, line := range bytes.Split(body, []byte("\n")) {
			if len(bytes.TrimSpace(line)) > 0 {
				check(fmt.Sprintf("line %d", i+1), line)
			}
		}
	default:
		if !utf8.Valid(body) {
			return []string{"text body is not UTF-8"}
		}
		if err := sch.Validate(string(body)); err != nil {
			out = append(out, "body: "+err.Error())
		}
	}
	return out
}

// oaClient drives the server and checks every answer against the spec.
type oaClient struct {
	t    *testing.T
	spec *oaSpec
	base string
}

type oaReq struct {
	token  string
	args   []string // values of the path template's {names}, in order
	query  url.Values
	ctype  string
	body   []byte
	header map[string]string
}

type oaRes struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any // a JSON object answer, decoded
}

func (r oaRes) errCode() string {
	e, _ := r.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func (r oaRes) errField() string {
	e, _ := r.body["error"].(map[string]any)
	f, _ := e["field"].(string)
	return f
}

func (c *oaClient) call(key string, q oaReq) oaRes {
	c.t.Helper()
	method, tmpl, _ := strings.Cut(key, " ")
	path := tmpl
	for _, a := range q.args {
		i, j := strings.Index(path, "{"), strings.Index(path, "}")
		if i < 0 || j < i {
			c.t.Fatalf("%s: too many path values", key)
		}
		path = path[:i] + url.PathEscape(a) + path[j+1:]
	}
	u := c.base + path
	if len(q.query) > 0 {
		u += "?" + q.query.Encode()
	}
	var body io.Reader
	if q.body != nil {
		body = bytes.NewReader(q.body)
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if q.ctype != "" {
		req.Header.Set("Content-Type", q.ctype)
	}
	if q.token != "" {
		req.Header.Set("Authorization", "Bearer "+q.token)
	}
	for k, v := range q.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	res := oaRes{status: resp.StatusCode, header: resp.Header, raw: raw}
	_ = json.Unmarshal(raw, &res.body)
	for _, p := range c.spec.problems(key, resp.StatusCode, resp.Header.Get("Content-Type"), raw) {
		c.t.Errorf("%s -> %d: %s\n%s", key, resp.StatusCode, p, oaShort(raw))
	}
	if op := c.spec.ops[key]; op != nil {
		op.seen[resp.StatusCode] = true
	}
	if code := res.errCode(); code != "" {
		c.spec.seen[code] = true
	}
	return res
}

// want calls and fails the test unless the status is the one expected.
func (c *oaClient) want(status int, key string, q oaReq) oaRes {
	c.t.Helper()
	r := c.call(key, q)
	if r.status != status {
		c.t.Fatalf("%s: got %d, want %d\n%s", key, r.status, status, oaShort(r.raw))
	}
	return r
}

// wantErr is want for an error answer with its code and, when given, field.
func (c *oaClient) wantErr(status int, code, field, key string, q oaReq) oaRes {
	c.t.Helper()
	r := c.want(status, key, q)
	if r.errCode() != code || field != "" && r.errField() != field {
		c.t.Fatalf("%s: got %s (field %q), want %s (field %q)\n%s", key, r.errCode(), r.errField(), code, field, oaShort(r.raw))
	}
	return r
}

// emit posts one structured-mode event. An event expected to be appended
// must also be valid by the documented request schema.
func (c *oaClient) emit(status int, token string, ev map[string]any) oaRes {
	c.t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		c.t.Fatal(err)
	}
	const media = "application/cloudevents+json"
	if status == http.StatusCreated {
		for _, p := range oaValidate(c.spec.ops["POST /v1/events"].requests[media], "application/json", b) {
			c.t.Errorf("event %s does not match the documented request schema: %s", ev["id"], p)
		}
	}
	return c.want(status, "POST /v1/events", oaReq{token: token, ctype: media, body: b})
}

func oaJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func oaShort(b []byte) string {
	if len(b) > 600 {
		return string(b[:600]) + "..."
	}
	return string(b)
}

// oaRoute is one route registered in services/server/server.go.
type oaRoute struct {
	role    string
	handler ast.Node
}

// oaServerRoutes reads the routes, their roles and the query and path
// parameters their handlers read (following calls into the package) from
// the server's source.
func oaServerRoutes(t *testing.T) (map[string]oaRoute, map[string]map[string]string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(oaServerDir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	funcs := map[string]*ast.FuncDecl{}
	var serverFile *ast.File
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(f) == "server.go" {
			serverFile = af
		}
		for _, d := range af.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok {
				funcs[fd.Name.Name] = fd
			}
		}
	}
	if serverFile == nil {
		t.Fatal("no server.go")
	}
	str := func(e ast.Expr) (string, bool) {
		l, ok := e.(*ast.BasicLit)
		if !ok || l.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(l.Value)
		return s, err == nil
	}
	routes := map[string]oaRoute{}
	ast.Inspect(serverFile, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) != 2 {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") {
			return true
		}
		pattern, ok := str(call.Args[0])
		if !ok || pattern == "/" { // the catch-all that answers 404
			return true
		}
		// A function literal or another package's handler (promhttp) is
		// walked as it stands; a method of the server is looked up.
		r := oaRoute{role: "none", handler: call.Args[1]}
		method := ""
		switch h := call.Args[1].(type) {
		case *ast.CallExpr:
			if hs, ok := h.Fun.(*ast.SelectorExpr); ok && hs.Sel.Name == "authed" && len(h.Args) == 2 {
				role := h.Args[0].(*ast.SelectorExpr).Sel.Name
				r.role = strings.ToLower(strings.TrimPrefix(role, "Role"))
				method = h.Args[1].(*ast.SelectorExpr).Sel.Name
			}
		case *ast.SelectorExpr:
			method = h.Sel.Name
		}
		if method != "" {
			fd := funcs[method]
			if fd == nil {
				t.Fatalf("route %s: handler %s not found in the source", pattern, method)
			}
			r.handler = fd
		}
		routes[pattern] = r
		return false
	})

	params := map[string]map[string]string{}
	for key, r := range routes {
		out := map[string]string{}
		visited := map[string]bool{}
		var walk func(ast.Node)
		walk = func(node ast.Node) {
			ast.Inspect(node, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				follow := func(name string) {
					if d := funcs[name]; d != nil && !visited[name] {
						visited[name] = true
						walk(d)
					}
				}
				switch fn := call.Fun.(type) {
				case *ast.Ident:
					if (fn.Name == "queryUint" || fn.Name == "queryTime") && len(call.Args) == 2 {
						if v, ok := str(call.Args[1]); ok {
							out[v] = "query"
						}
						return true
					}
					follow(fn.Name)
				case *ast.SelectorExpr:
					switch {
					case fn.Sel.Name == "treeSize" && len(call.Args) == 2:
						if v, ok := str(call.Args[1]); ok {
							out[v] = "query"
						}
					case fn.Sel.Name == "PathValue" && len(call.Args) == 1:
						if v, ok := str(call.Args[0]); ok {
							out[v] = "path"
						}
					case fn.Sel.Name == "Get" && len(call.Args) == 1:
						if x, ok := fn.X.(*ast.SelectorExpr); ok && x.Sel.Name == "Header" {
							return true // r.Header.Get: a header, not a parameter
						}
						if v, ok := str(call.Args[0]); ok {
							out[v] = "query"
						}
					default:
						if id, ok := fn.X.(*ast.Ident); ok && id.Name == "s" {
							follow(fn.Sel.Name)
						}
					}
				}
				return true
			})
		}
		walk(r.handler)
		params[key] = out
	}
	return routes, params
}

// The routes of the server and the operations of the spec are the same
// set, with the same roles and parameter names.
func TestOpenAPIRoutesMatchServer(t *testing.T) {
	spec := oaLoad(t)
	routes, params := oaServerRoutes(t)
	if len(routes) < 15 {
		t.Fatalf("read only %d routes from the server source; the parser is out of date", len(routes))
	}
	for key, r := range routes {
		op := spec.ops[key]
		if op == nil {
			t.Errorf("route %s is registered by the server but not in docs/openapi.yaml", key)
			continue
		}
		if op.role != r.role {
			t.Errorf("%s: x-custos-role %q, the server requires %q", key, op.role, r.role)
		}
		documented := map[string]string{}
		for name, in := range op.params {
			if in == "query" || in == "path" {
				documented[name] = in
			}
		}
		for name, in := range params[key] {
			if documented[name] != in {
				t.Errorf("%s: the handler reads %s parameter %q; the spec has %q", key, in, name, documented[name])
			}
		}
		for name, in := range documented {
			if params[key][name] != in {
				t.Errorf("%s: the spec documents %s parameter %q, which the handler does not read", key, in, name)
			}
		}
	}
	for key, op := range spec.ops {
		if _, ok := routes[key]; !ok {
			t.Errorf("docs/openapi.yaml documents %s, which the server does not register", key)
		}
		if op.id == "" || op.role == "" {
			t.Errorf("%s: operationId and x-custos-role are required", key)
		}
		if op.role == "none" {
			continue
		}
		for _, code := range []string{"401", "403", "429"} {
			if _, ok := op.responses[code]; !ok {
				t.Errorf("%s: an authenticated route must document %s", key, code)
			}
		}
	}
}

// The checker itself must catch what it is for: a missing required member,
// a wrong type, an unknown member, a conditional requirement, an
// undocumented status or content type, a bad NDJSON line.
func TestOpenAPICheckerRejects(t *testing.T) {
	spec := oaLoad(t)
	hash := "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
	rev := "sha256:" + strings.Repeat("ab", 32)
	decision := `{"allow":true,"reasons":[],"obligations":[],"policy_revision":"` + rev + `"}`
	good := `{"seq":3,"leaf_hash":"` + hash + `","decision":` + decision + `}`
	if p := spec.problems("POST /v1/events", 201, "application/json", []byte(good)); p != nil {
		t.Fatalf("a good receipt is refused: %v", p)
	}
	bad := map[string]string{
		"missing leaf_hash":    `{"seq":3,"decision":` + decision + `}`,
		"seq as string":        `{"seq":"3","leaf_hash":"` + hash + `","decision":` + decision + `}`,
		"unknown member":       `{"seq":3,"leaf_hash":"` + hash + `","decision":` + decision + `,"extra":1}`,
		"leaf_hash not base64": `{"seq":3,"leaf_hash":"abc","decision":` + decision + `}`,
		"decision lacks allow": `{"seq":3,"leaf_hash":"` + hash + `","decision":{"reasons":[],"obligations":[],"policy_revision":"` + rev + `"}}`,
		"not JSON":             `{"seq":3`,
	}
	for name, body := range bad {
		if p := spec.problems("POST /v1/events", 201, "application/json", []byte(body)); p == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	errBad := map[string]string{
		"invalid_event without field":  `{"error":{"code":"invalid_event","message":"x"}}`,
		"unknown code":                 `{"error":{"code":"teapot","message":"x"}}`,
		"policy_denied without seq":    `{"error":{"code":"policy_denied","message":"x"},"decision":` + decision + `}`,
		"code of another status (400)": `{"error":{"code":"unauthorized","message":"x"}}`,
	}
	for name, body := range errBad {
		if p := spec.problems("POST /v1/events", 400, "application/json", []byte(body)); p == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if p := spec.problems("POST /v1/events", 400, "application/json", []byte(`{"error":{"code":"invalid_event","field":"","message":"x"}}`)); p != nil {
		t.Errorf("a good 400 is refused: %v", p)
	}
	if p := spec.problems("POST /v1/events", 418, "application/json", []byte(good)); p == nil {
		t.Error("an undocumented status is accepted")
	}
	if p := spec.problems("POST /v1/events", 201, "text/plain", []byte(good)); p == nil {
		t.Error("an undocumented content type is accepted")
	}
	if p := spec.problems("GET /v1/nowhere", 200, "application/json", []byte(`{}`)); p == nil {
		t.Error("an undocumented route is accepted")
	}
	line := `{"seq":1,"leaf_hash":"` + hash + `","event":{"v":1,"type":"privacy.data.used","id":"a","source":"s","time":"2026-01-01T00:00:00Z","recorded_at":"2026-01-01T00:00:00Z","data":{}}}`
	if p := spec.problems("GET /v1/events", 200, "application/x-ndjson", []byte(line+"\n"+line+"\n")); p != nil {
		t.Fatalf("good NDJSON refused: %v", p)
	}
	if p := spec.problems("GET /v1/events", 200, "application/x-ndjson", []byte(line+"\n"+`{"seq":2}`+"\n")); p == nil {
		t.Error("a bad second NDJSON line is accepted")
	}
	if p := spec.problems("GET /v1/checkpoint", 200, "text/plain; charset=utf-8", []byte("origin\n5\nnot-a-hash\n\n")); p == nil {
		t.Error("a malformed checkpoint note is accepted")
	}
	// The request schema is the event schemas of docs/schemas.
	events := spec.ops["POST /v1/events"].requests["application/cloudevents+json"]
	ev := map[string]any{
		"specversion": "1.0", "id": "e-1", "source": shopSource, "type": "privacy.subject.registered", "subject": "u-1",
		"time": "2026-01-01T00:00:00Z", "datacontenttype": "application/json", "data": map[string]any{"residence": "CN", "age": 30},
	}
	if p := oaValidate(events, "application/json", oaJSON(t, ev)); p != nil {
		t.Fatalf("a good event is refused: %v", p)
	}
	ev["data"] = map[string]any{"residence": "CN", "age": 30, "nickname": "x"}
	if p := oaValidate(events, "application/json", oaJSON(t, ev)); p == nil {
		t.Error("an event with an unknown data member is accepted")
	}
	// The examples in the spec are valid by their own schemas.
	if len(spec.samples) < 3 {
		t.Errorf("read examples of only %d schemas", len(spec.samples))
	}
	for name, exs := range spec.samples {
		for i, ex := range exs {
			if err := spec.schemas[name].Validate(ex); err != nil {
				t.Errorf("example %d of %s: %v", i, name, err)
			}
		}
	}
	// A batch result must carry what its status implies.
	if p := spec.problems("POST /v1/events", 200, "application/json", []byte(`{"results":[{"status":201}]}`)); p == nil {
		t.Error("a 201 batch result without a receipt is accepted")
	}
}

// A realistic life of the API, every operation driven, every answer
// checked against the spec.
func TestOpenAPIConformance(t *testing.T) {
	spec := oaLoad(t)
	// The built-in set from a directory, so that POST /v1/policy/reload has
	// something to load.
	policyDir := t.TempDir()
	copyDir(t, "../../policies", policyDir)
	h := start(t, func(c *app.Config) { c.PoliciesDir, c.PolicyPoll = policyDir, time.Hour })
	c := &oaClient{t: t, spec: spec, base: h.app.URL}
	admin := h.admin.Token
	ctx := context.Background()
	const media = "application/cloudevents+json"

	c.want(200, "GET /healthz", oaReq{})
	c.want(200, "GET /readyz", oaReq{})
	// Before anything is appended there may or may not be a checkpoint:
	// either answer must be the documented one.
	c.call("GET /v1/checkpoint", oaReq{token: admin})

	// Tokens.
	tok := func(body map[string]any) string {
		r := c.want(201, "POST /v1/tokens", oaReq{token: admin, ctype: "application/json", body: oaJSON(t, body)})
		s, _ := r.body["token"].(string)
		return s
	}
	em := tok(map[string]any{"role": "emitter", "source": shopSource})
	au := tok(map[string]any{"role": "auditor", "note": "openapi conformance"})
	spare := c.want(201, "POST /v1/tokens", oaReq{token: admin, ctype: "application/json", body: []byte(`{"role":"admin"}`)})
	c.want(200, "GET /v1/tokens", oaReq{token: admin})
	for name, body := range map[string]string{
		"unknown role":       `{"role":"root"}`,
		"emitter, no source": `{"role":"emitter"}`,
		"unknown member":     `{"role":"auditor","scope":"all"}`,
		"two objects":        `{"role":"auditor"}{"role":"admin"}`,
		"not JSON":           `role=auditor`,
	} {
		if r := c.call("POST /v1/tokens", oaReq{token: admin, ctype: "application/json", body: []byte(body)}); r.status != 400 || r.errCode() != "invalid_request" {
			t.Errorf("token request %s: %d %s", name, r.status, r.raw)
		}
	}

	// A subject's life: registration, consent, collection, allowed and
	// refused transfers, a rights request.
	subj := "oa-user-1"
	c.emit(201, em, h.ev("privacy.subject.registered", "oa-reg-1", subj, map[string]any{"residence": "CN", "age": 34}))
	c.emit(201, em, h.ev("privacy.consent.granted", "oa-consent-1", subj, map[string]any{
		"consent_id": "oa-c1", "notice_version": "1.0",
		"purposes":     []string{"service_provision", "customer_support"},
		"categories":   []string{"identity.contact", "identity.basic"},
		"destinations": []string{"SG"}, "method": "web_form",
	}))
	c.emit(201, em, h.ev("privacy.data.collected", "oa-col-1", subj, map[string]any{
		"categories": []string{"identity.contact"}, "purpose": "service_provision", "storage_region": "CN",
		"retention": "P1Y", "fields": map[string]any{"email": "oa.user@example.cn"},
	}))
	c.emit(201, em, h.transfer(subj, "oa-tr-sg", "SG", "standard_contract"))
	denied := c.emit(403, em, h.transfer(subj, "oa-tr-us", "US", "standard_contract"))
	if denied.errCode() != "policy_denied" {
		t.Fatalf("transfer to US: %s", denied.raw)
	}
	c.emit(201, em, h.ev("privacy.rights.requested", "oa-rq-1", subj, map[string]any{"request_id": "oa-req-1", "right": "access"}))
	// Idempotent re-send, and a conflicting one.
	c.emit(200, em, h.ev("privacy.subject.registered", "oa-reg-1", subj, map[string]any{"residence": "CN", "age": 34}))
	conflict := h.ev("privacy.subject.registered", "oa-reg-1", subj, map[string]any{"residence": "CN", "age": 35})
	c.wantErr(409, "duplicate_id_conflict", "", "POST /v1/events", oaReq{token: em, ctype: media, body: oaJSON(t, conflict)})

	// Binary mode.
	c.want(201, "POST /v1/events", oaReq{token: em, ctype: "application/json",
		body: oaJSON(t, map[string]any{"categories": []string{"identity.contact"}, "purpose": "customer_support"}),
		header: map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "oa-bin-1", "Ce-Source": shopSource,
			"Ce-Type": "privacy.data.used", "Ce-Subject": subj, "Ce-Time": h.clock.Now().Format(time.RFC3339)}})

	// A batch: appended, invalid, denied, foreign source.
	foreign := h.ev("privacy.data.used", "oa-b-4", subj, map[string]any{"categories": []string{"identity.contact"}, "purpose": "customer_support"})
	foreign["source"] = "https://other.example/app"
	batch := []map[string]any{
		h.ev("privacy.data.used", "oa-b-1", subj, map[string]any{"categories": []string{"identity.basic"}, "purpose": "service_provision"}),
		h.transfer(subj, "oa-b-2", "ZZ", "standard_contract"),
		h.transfer(subj, "oa-b-3", "JP", "standard_contract"),
		foreign,
	}
	br := c.want(200, "POST /v1/events", oaReq{token: em, ctype: "application/cloudevents-batch+json", body: oaJSON(t, batch)})
	var got []string
	for _, x := range br.body["results"].([]any) {
		r := x.(map[string]any)
		e, _ := r["error"].(map[string]any)
		got = append(got, fmt.Sprintf("%v %v", r["status"], e["code"]))
	}
	if want := []string{"201 <nil>", "400 invalid_event", "403 policy_denied", "403 forbidden"}; !slices.Equal(got, want) {
		t.Fatalf("batch results %v, want %v", got, want)
	}

	// Refusals of POST /v1/events.
	bad := h.transfer(subj, "oa-bad-1", "XX", "standard_contract")
	c.wantErr(400, "invalid_event", "data.to_region", "POST /v1/events", oaReq{token: em, ctype: media, body: oaJSON(t, bad)})
	c.wantErr(400, "invalid_event", "", "POST /v1/events", oaReq{token: em, ctype: media, body: []byte(`not json`)})
	own := h.ev("privacy.data.used", "oa-custos-1", subj, map[string]any{"categories": []string{"identity.basic"}, "purpose": "security"})
	own["type"] = "custos.decision.denied"
	c.wantErr(400, "invalid_event", "type", "POST /v1/events", oaReq{token: em, ctype: media, body: oaJSON(t, own)})
	c.wantErr(403, "forbidden", "source", "POST /v1/events", oaReq{token: em, ctype: media, body: oaJSON(t, foreign)})
	c.wantErr(415, "unsupported_media_type", "", "POST /v1/events", oaReq{token: em, ctype: "text/plain", body: []byte(`{}`)})
	c.wantErr(415, "unsupported_media_type", "", "POST /v1/events", oaReq{token: em, body: []byte(`{}`)})
	huge := append([]byte(`{"id":"`), bytes.Repeat([]byte("a"), 1<<20)...)
	c.wantErr(413, "payload_too_large", "", "POST /v1/events", oaReq{token: em, ctype: media, body: huge})
	c.wantErr(401, "unauthorized", "", "POST /v1/events", oaReq{token: "cst_0123456789abcdef_nope", ctype: media, body: []byte(`{}`)})

	// Decisions.
	d := c.want(200, "POST /v1/decisions", oaReq{token: em, ctype: media, body: oaJSON(t, h.transfer(subj, "oa-d-1", "US", "standard_contract"))})
	if d.body["allow"] != false {
		t.Fatalf("decision for US: %s", d.raw)
	}
	c.want(200, "POST /v1/decisions", oaReq{token: em, ctype: "application/cloudevents-batch+json",
		body: oaJSON(t, []map[string]any{h.transfer(subj, "oa-d-2", "SG", "standard_contract")})})
	c.wantErr(400, "invalid_request", "", "POST /v1/decisions", oaReq{token: em, ctype: "application/cloudevents-batch+json", body: oaJSON(t, batch[:2])})
	c.wantErr(400, "invalid_event", "data.to_region", "POST /v1/decisions", oaReq{token: em, ctype: media, body: oaJSON(t, bad)})
	c.wantErr(403, "forbidden", "source", "POST /v1/decisions", oaReq{token: em, ctype: media, body: oaJSON(t, foreign)})
	c.wantErr(415, "unsupported_media_type", "", "POST /v1/decisions", oaReq{token: em, ctype: "application/xml", body: []byte(`<e/>`)})
	c.wantErr(413, "payload_too_large", "", "POST /v1/decisions", oaReq{token: em, ctype: media, body: huge})

	// Checkpoint and proofs.
	size := int64(h.streamLen())
	h.waitCheckpoint(size)
	sz := strconv.FormatInt(size, 10)
	c.want(200, "GET /v1/checkpoint", oaReq{token: au})
	c.want(200, "GET /v1/checkpoints", oaReq{token: au})
	c.want(200, "GET /v1/checkpoint/key", oaReq{token: au})
	c.want(200, "GET /v1/proofs/inclusion", oaReq{token: au, query: url.Values{"seq": {"2"}, "tree_size": {sz}}})
	c.want(200, "GET /v1/proofs/inclusion", oaReq{token: au, query: url.Values{"seq": {sz}}})
	c.wantErr(400, "invalid_request", "seq", "GET /v1/proofs/inclusion", oaReq{token: au, query: url.Values{"seq": {"0"}}})
	c.wantErr(400, "invalid_request", "seq", "GET /v1/proofs/inclusion", oaReq{token: au, query: url.Values{"seq": {"one"}}})
	c.wantErr(400, "invalid_request", "tree_size", "GET /v1/proofs/inclusion", oaReq{token: au, query: url.Values{"seq": {"1"}, "tree_size": {strconv.FormatInt(size+1000, 10)}}})
	c.want(200, "GET /v1/proofs/inclusions", oaReq{token: au, query: url.Values{"from_seq": {"1"}, "to_seq": {sz}, "tree_size": {sz}}})
	c.wantErr(400, "invalid_request", "from_seq", "GET /v1/proofs/inclusions", oaReq{token: au})
	c.want(200, "GET /v1/proofs/consistency", oaReq{token: au, query: url.Values{"from": {"1"}, "to": {sz}}})
	c.want(200, "GET /v1/proofs/consistency", oaReq{token: au, query: url.Values{"from": {sz}}})
	c.wantErr(400, "invalid_request", "from", "GET /v1/proofs/consistency", oaReq{token: au, query: url.Values{"from": {"0"}}})
	c.wantErr(400, "invalid_request", "to", "GET /v1/proofs/consistency", oaReq{token: au, query: url.Values{"from": {"1"}, "to": {strconv.FormatInt(size+1000, 10)}}})

	// Replay.
	all := c.want(200, "GET /v1/events", oaReq{token: au})
	if n := bytes.Count(all.raw, []byte("\n")); int64(n) < size {
		t.Fatalf("replay: %d lines, ledger holds at least %d", n, size)
	}
	yesterday := h.clock.Now().Add(-24 * time.Hour).Format(time.RFC3339)
	tomorrow := h.clock.Now().Add(24 * time.Hour).Format(time.RFC3339Nano)
	c.want(200, "GET /v1/events", oaReq{token: au, query: url.Values{"subject": {subj}, "type": {"privacy.data.transferred"},
		"since": {yesterday}, "until": {tomorrow}, "from_seq": {"1"}, "to_seq": {sz}}})
	c.want(200, "GET /v1/events", oaReq{token: au, query: url.Values{"type": {"custos.decision.denied"}}})
	c.wantErr(400, "invalid_request", "type", "GET /v1/events", oaReq{token: au, query: url.Values{"type": {"privacy.data.leaked"}}})
	c.wantErr(400, "invalid_request", "since", "GET /v1/events", oaReq{token: au, query: url.Values{"since": {"yesterday"}}})
	c.wantErr(400, "invalid_request", "until", "GET /v1/events", oaReq{token: au, query: url.Values{"until": {"2026-13-01"}}})
	c.wantErr(400, "invalid_request", "from_seq", "GET /v1/events", oaReq{token: au, query: url.Values{"from_seq": {"-1"}}})
	c.wantErr(400, "invalid_request", "to_seq", "GET /v1/events", oaReq{token: au, query: url.Values{"to_seq": {"x"}}})

	// Subject state, now, in the past, of nobody; export.
	st := c.want(200, "GET /v1/subjects/{subject}/state", oaReq{token: au, args: []string{subj}})
	if n := len(st.body["transfers"].([]any)); n != 1 {
		t.Fatalf("state holds %d transfers, want 1", n)
	}
	c.want(200, "GET /v1/subjects/{subject}/state", oaReq{token: au, args: []string{subj}, query: url.Values{"at": {yesterday}}})
	c.want(200, "GET /v1/subjects/{subject}/state", oaReq{token: au, args: []string{"oa-nobody"}})
	c.wantErr(400, "invalid_request", "at", "GET /v1/subjects/{subject}/state", oaReq{token: au, args: []string{subj}, query: url.Values{"at": {"now"}}})
	ex := c.want(200, "GET /v1/subjects/{subject}/export", oaReq{token: admin, args: []string{subj}})
	if cv, _ := ex.body["current_values"].(map[string]any); cv["email"] == nil {
		t.Fatalf("export lacks the collected email: %s", oaShort(ex.raw))
	}
	c.wantErr(404, "not_found", "", "GET /v1/subjects/{subject}/export", oaReq{token: admin, args: []string{"oa-nobody"}})
	cr := c.want(200, "GET /v1/subjects/{subject}/consents", oaReq{token: au, args: []string{subj}, query: url.Values{"format": {"iso27560"}}})
	if recs, _ := cr.body["records"].([]any); len(recs) == 0 {
		t.Fatalf("consent records: none for a subject with a consent: %s", oaShort(cr.raw))
	}
	c.wantErr(400, "invalid_request", "format", "GET /v1/subjects/{subject}/consents", oaReq{token: au, args: []string{subj}, query: url.Values{"format": {"pdf"}}})
	c.want(200, "GET /contexts/iso27560-v1.jsonld", oaReq{})

	// The transfer register, JSON and CSV, and its filters.
	reg := c.want(200, "GET /v1/transfers", oaReq{token: au})
	var allowed, refused int
	for _, x := range reg.body["transfers"].([]any) {
		if x.(map[string]any)["allowed"] == true {
			allowed++
		} else {
			refused++
		}
	}
	if allowed < 1 || refused < 2 {
		t.Fatalf("register: %d allowed, %d refused; want the SG transfer and the US and JP attempts", allowed, refused)
	}
	csvRes := c.want(200, "GET /v1/transfers", oaReq{token: au, query: url.Values{"format": {"csv"}, "destination": {"US"}}})
	if n := bytes.Count(csvRes.raw, []byte("\n")); n != 2 {
		t.Fatalf("CSV for US: %d lines, want the header and one row\n%s", n, csvRes.raw)
	}
	c.want(200, "GET /v1/transfers", oaReq{token: au, header: map[string]string{"Accept": "text/csv"}})
	c.want(200, "GET /v1/transfers", oaReq{token: au, query: url.Values{"format": {"json"}, "from": {yesterday}, "to": {tomorrow}}})
	c.wantErr(400, "invalid_request", "destination", "GET /v1/transfers", oaReq{token: au, query: url.Values{"destination": {"ZZ"}}})
	c.wantErr(400, "invalid_request", "from", "GET /v1/transfers", oaReq{token: au, query: url.Values{"from": {"last week"}}})
	c.wantErr(400, "invalid_request", "to", "GET /v1/transfers", oaReq{token: au, query: url.Values{"to": {"1"}}})

	// Rights and policy.
	for _, s := range []string{"", "all", "open", "overdue", "closed"} {
		q := url.Values{}
		if s != "" {
			q.Set("status", s)
		}
		c.want(200, "GET /v1/rights", oaReq{token: au, query: q})
	}
	c.wantErr(400, "invalid_request", "status", "GET /v1/rights", oaReq{token: au, query: url.Values{"status": {"late"}}})
	c.want(200, "GET /v1/policy", oaReq{token: au})
	c.want(200, "POST /v1/policy/reload", oaReq{token: admin})
	var candidate bytes.Buffer
	if err := policy.BuildBundle(&candidate, os.DirFS(policyDir), "oa", nil, ""); err != nil {
		t.Fatal(err)
	}
	wi := c.want(200, "POST /v1/policy/whatif", oaReq{token: admin, ctype: "application/gzip", body: candidate.Bytes()})
	if n, _ := wi.body["changes"].([]any); len(n) != 0 {
		t.Fatalf("whatif of the active set changed decisions: %s", oaShort(wi.raw))
	}
	c.wantErr(400, "invalid_request", "body", "POST /v1/policy/whatif", oaReq{token: admin, ctype: "application/gzip", body: []byte("x")})
	c.wantErr(400, "invalid_request", "policies", "PUT /v1/policy", oaReq{token: admin, ctype: "application/gzip", body: candidate.Bytes()})
	// A second server, started on a bundle file, installs one.
	bundlePath := filepath.Join(t.TempDir(), "policies.tar.gz")
	if err := os.WriteFile(bundlePath, candidate.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	hb := start(t, func(c *app.Config) { c.PoliciesDir = bundlePath })
	cb := &oaClient{t: t, spec: spec, base: hb.app.URL}
	cb.want(200, "PUT /v1/policy", oaReq{token: hb.admin.Token, ctype: "application/gzip", body: candidate.Bytes()})
	cb.wantErr(400, "invalid_request", "body", "PUT /v1/policy", oaReq{token: hb.admin.Token, ctype: "application/gzip", body: []byte("x")})
	c.wantErr(403, "forbidden", "", "POST /v1/policy/reload", oaReq{token: au})

	// Every authenticated operation: no token, a malformed one, a token of
	// the wrong role.
	wrong := map[string]string{"emitter": au, "auditor": em, "admin": au, "policy": au}
	for _, key := range slices.Sorted(maps.Keys(spec.ops)) {
		op := spec.ops[key]
		if op.role == "none" {
			continue
		}
		var args []string
		for range strings.Count(key, "{") {
			args = append(args, "0123456789abcdef")
		}
		c.wantErr(401, "unauthorized", "", key, oaReq{args: args})
		c.wantErr(401, "unauthorized", "", key, oaReq{args: args, token: "not-a-token"})
		c.wantErr(403, "forbidden", "", key, oaReq{args: args, token: wrong[op.role]})
	}

	// Revocation.
	spareID, _ := spare.body["id"].(string)
	c.want(200, "DELETE /v1/tokens/{id}", oaReq{token: admin, args: []string{spareID}})
	c.want(200, "DELETE /v1/tokens/{id}", oaReq{token: admin, args: []string{spareID}})
	c.wantErr(404, "not_found", "", "DELETE /v1/tokens/{id}", oaReq{token: admin, args: []string{"0123456789abcdef"}})
	spareTok, _ := spare.body["token"].(string)
	c.wantErr(401, "unauthorized", "", "GET /v1/tokens", oaReq{token: spareTok})

	// A path the server does not serve: 404; a method it does not serve on
	// a known path: 405 with Allow; each with the documented error body.
	for _, q := range []struct {
		method, path string
		status       int
		schema       string
		allow        string
	}{
		{"GET", "/v1/nowhere", 404, "NotFoundError", ""},
		{"PUT", "/v1/tokens", 405, "MethodNotAllowedError", "GET, POST"},
		{"DELETE", "/v1/events", 405, "MethodNotAllowedError", "GET, POST"},
	} {
		req, _ := http.NewRequestWithContext(ctx, q.method, h.app.URL+q.path, nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != q.status || resp.Header.Get("Allow") != q.allow {
			t.Errorf("%s %s: %d (Allow %q), documented %d (Allow %q)", q.method, q.path, resp.StatusCode, resp.Header.Get("Allow"), q.status, q.allow)
		}
		for _, p := range oaValidate(spec.schemas[q.schema], "application/json", raw) {
			t.Errorf("%s %s: %s", q.method, q.path, p)
		}
		var body struct {
			Error struct{ Code string } `json:"error"`
		}
		if json.Unmarshal(raw, &body) == nil {
			spec.seen[body.Error.Code] = true
		}
	}

	c.want(200, "GET /metrics", oaReq{})
	c.want(200, "GET /metrics", oaReq{header: map[string]string{"Accept": "application/openmetrics-text; version=1.0.0"}})

	// The key service goes away: a new subject cannot get a key (503) and
	// the server is not ready (503). Then it comes back.
	ks := h.app.KeyServer()
	addr := strings.TrimPrefix(h.app.VaultURL, "http://")
	if err := ks.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	c.wantErr(503, "unavailable", "", "POST /v1/events", oaReq{token: em, ctype: media,
		body: oaJSON(t, h.ev("privacy.subject.registered", "oa-reg-new", "oa-user-new", map[string]any{"residence": "CN", "age": 40}))})
	if r := c.want(503, "GET /readyz", oaReq{}); r.body["ready"] != false {
		t.Fatalf("readyz during the outage: %s", r.raw)
	}
	ks2, err := keyserver.Open(filepath.Join(h.dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks2.ListenAndServe(ctx, addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ks2.Shutdown(context.Background()) })

	// Every operation answered with a success, and every error code the
	// server can be made to send from outside was seen (rate_limited by
	// TestOpenAPIRateLimit).
	for key, op := range spec.ops {
		ok := false
		for s := range op.seen {
			ok = ok || s < 300
		}
		if !ok {
			t.Errorf("%s was never answered with a success", key)
		}
	}
	for _, code := range spec.codes {
		switch code {
		case "internal", "rate_limited":
			continue
		}
		if !spec.seen[code] {
			t.Errorf("error code %s was never provoked", code)
		}
	}
}

// rate_limited, with its Retry-After, against the spec.
func TestOpenAPIRateLimit(t *testing.T) {
	spec := oaLoad(t)
	h := start(t, func(c *app.Config) { c.RatePerToken = 1 })
	c := &oaClient{t: t, spec: spec, base: h.app.URL}
	r := c.want(201, "POST /v1/tokens", oaReq{token: h.admin.Token, ctype: "application/json", body: []byte(`{"role":"auditor"}`)})
	au, _ := r.body["token"].(string)
	// Bursts of twice the rate: the third request within a second is
	// refused; a slow machine only makes it take a few more.
	for i := 0; i < 100; i++ {
		res := c.call("GET /v1/policy", oaReq{token: au})
		if res.status == http.StatusTooManyRequests {
			if res.errCode() != "rate_limited" || res.header.Get("Retry-After") == "" {
				t.Fatalf("429 without rate_limited and Retry-After: %v %s", res.header, res.raw)
			}
			return
		}
	}
	t.Fatal("no 429 within 100 requests at 1/s")
}
