package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"custos.dev/services/app"
	"custos.dev/services/client"
	"custos.dev/services/server"
)

// hostile is one request of the battery and what it must get back.
type hostile struct {
	name    string
	method  string // POST by default
	path    string // /v1/events by default
	token   string
	auth    string // a raw Authorization header, overriding token
	ctype   string // Content-Type; "-" for none
	header  map[string]string
	body    []byte
	chunked bool // send without a Content-Length

	status int    // wanted status; 0: any 4xx
	code   string // wanted error code; "" : any
	field  string // wanted field, checked when code is invalid_event
	orFld  string // another acceptable field
	anyFld bool   // invalid_event without a predictable field
}

// answer is a raw HTTP answer.
type answer struct {
	status int
	header http.Header
	raw    []byte
}

// statusOf is the one status each error code may come with (docs/openapi.yaml).
var statusOf = map[string]int{
	"invalid_event": 400, "invalid_request": 400, "unauthorized": 401, "forbidden": 403,
	"policy_denied": 403, "not_found": 404, "method_not_allowed": 405, "duplicate_id_conflict": 409,
	"payload_too_large": 413, "unsupported_media_type": 415, "rate_limited": 429,
}

func doRaw(base string, x hostile) (answer, error) {
	method, path := x.method, x.path
	if method == "" {
		method = http.MethodPost
	}
	if path == "" {
		path = "/v1/events"
	}
	var body io.Reader = bytes.NewReader(x.body)
	if x.chunked {
		// A reader of unknown length makes the client send chunks.
		body = io.MultiReader(bytes.NewReader(x.body))
	}
	if x.body == nil {
		body = nil
	}
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		return answer{}, err
	}
	switch {
	case x.ctype == "-":
	case x.ctype != "":
		req.Header.Set("Content-Type", x.ctype)
	case x.body != nil:
		req.Header.Set("Content-Type", "application/cloudevents+json")
	}
	if x.auth != "" {
		req.Header["Authorization"] = []string{x.auth}
	} else if x.token != "" {
		req.Header.Set("Authorization", "Bearer "+x.token)
	}
	for k, v := range x.header {
		req.Header[k] = []string{v}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	return answer{status: res.StatusCode, header: res.Header, raw: raw}, err
}

// apiError is the error member of an error body, kept raw to tell a
// missing member from an empty one.
type apiError map[string]json.RawMessage

func (e apiError) str(k string) (string, bool) {
	raw, ok := e[k]
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// checkErrorBody reports what is wrong with an error answer's shape:
// JSON {"error": {"code", "message", ...}}, the status that goes with the
// code, and a field for invalid_event.
func checkErrorBody(status int, e apiError) string {
	code, ok := e.str("code")
	if !ok || code == "" {
		return "error.code missing"
	}
	if msg, ok := e.str("message"); !ok || msg == "" {
		return "error.message missing"
	}
	if want, known := statusOf[code]; !known || want != status {
		return fmt.Sprintf("code %s with status %d", code, status)
	}
	if code == "invalid_event" {
		if _, ok := e.str("field"); !ok {
			return "invalid_event without error.field"
		}
	}
	return ""
}

// judge returns what is wrong with a's answer to x, or "".
func judge(x hostile, a answer) string {
	if a.status < 400 || a.status > 499 {
		return fmt.Sprintf("status %d, want 4xx", a.status)
	}
	if x.status != 0 && a.status != x.status {
		return fmt.Sprintf("status %d, want %d", a.status, x.status)
	}
	if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Sprintf("Content-Type %q", ct)
	}
	var body struct {
		Error apiError `json:"error"`
	}
	if err := json.Unmarshal(a.raw, &body); err != nil || body.Error == nil {
		return "body is not {\"error\": {...}}"
	}
	if p := checkErrorBody(a.status, body.Error); p != "" {
		return p
	}
	code, _ := body.Error.str("code")
	if x.code != "" && code != x.code {
		return fmt.Sprintf("code %s, want %s", code, x.code)
	}
	if code == "invalid_event" && !x.anyFld {
		if f, _ := body.Error.str("field"); f != x.field && (x.orFld == "" || f != x.orFld) {
			return fmt.Sprintf("field %q, want %q", f, x.field)
		}
	}
	return ""
}

// battery runs requests with a few workers and fails the test with at
// most a screenful of the mismatches.
func battery(t *testing.T, base string, xs []hostile) {
	t.Helper()
	var mu sync.Mutex
	var bad []string
	work := make(chan hostile)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for x := range work {
				a, err := doRaw(base, x)
				p := ""
				if err != nil {
					p = err.Error()
				} else {
					p = judge(x, a)
				}
				if p != "" {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%s: %s: %.300s", x.name, p, a.raw))
					mu.Unlock()
				}
			}
		}()
	}
	for _, x := range xs {
		work <- x
	}
	close(work)
	wg.Wait()
	sort.Strings(bad)
	for i, b := range bad {
		if i == 100 {
			t.Errorf("... and %d more", len(bad)-i)
			break
		}
		t.Error(b)
	}
}

// base is one valid event of each type, from the event package's
// examples, made to belong to the shop's emitter and to now.
type base struct {
	typ string
	doc map[string]any
}

func loadBases(t *testing.T, now time.Time) []base {
	t.Helper()
	files, err := filepath.Glob("../../ledger/event/testdata/valid/*.json")
	if err != nil || len(files) != 12 {
		t.Fatalf("valid examples: %v %v", files, err)
	}
	var out []base
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			t.Fatal(err)
		}
		doc["source"] = shopSource
		doc["time"] = now.Format(time.RFC3339)
		doc["id"] = uniq("battery")
		data := doc["data"].(map[string]any)
		if _, ok := data["effective"]; ok {
			data["effective"] = now.Format(time.RFC3339)
		}
		if _, ok := data["expires"]; ok {
			data["expires"] = now.AddDate(1, 0, 0).Format(time.RFC3339)
		}
		out = append(out, base{typ: doc["type"].(string), doc: doc})
	}
	// Variants with the optional members the examples leave out.
	variant := func(i int, data map[string]any) {
		doc := clone(out[i].doc).(map[string]any)
		doc["id"] = uniq("battery")
		doc["data"] = data
		out = append(out, base{typ: doc["type"].(string), doc: doc})
	}
	guardian := map[string]any{"ref": "guardian-1", "relation": "parent"}
	variant(1, map[string]any{"residence": "CN", "age": json.Number("12"), "guardian": guardian})
	consent := clone(out[2].doc["data"]).(map[string]any)
	consent["guardian"] = guardian
	variant(2, consent)
	variant(10, map[string]any{"consent_id": "c-1001-1"})
	variant(10, map[string]any{"purposes": []any{"customer_support"}, "destinations": []any{"SG"}, "categories": []any{"identity.contact"}})
	variant(11, map[string]any{"scope": []any{"identity.contact", "usage.device"}, "reason": "withdrawal"})
	return out
}

// clone deep-copies a decoded JSON document.
func clone(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = clone(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = clone(e)
		}
		return s
	}
	return v
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// leaf is one value inside an event, addressed as the event package names
// fields in errors: "data.purposes[1]", "data.fields.email".
type leaf struct {
	path string
	key  string // the member name holding it (the list's, for elements)
	val  any
	set  func(doc map[string]any, v any)
	del  func(doc map[string]any)
}

// leaves lists every value of doc but the root.
func leaves(doc map[string]any) []leaf {
	var out []leaf
	var walk func(v any, path, key string, get func(map[string]any) any)
	walk = func(v any, path, key string, get func(map[string]any) any) {
		switch x := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				child := k
				if path != "" {
					child = path + "." + k
				}
				k := k
				parent := get
				out = append(out, leaf{path: child, key: k, val: x[k],
					set: func(d map[string]any, nv any) { parent(d).(map[string]any)[k] = nv },
					del: func(d map[string]any) { delete(parent(d).(map[string]any), k) }})
				walk(x[k], child, k, func(d map[string]any) any { return parent(d).(map[string]any)[k] })
			}
		case []any:
			for i := range x {
				i := i
				parent := get
				child := path + "[" + strconv.Itoa(i) + "]"
				out = append(out, leaf{path: child, key: key, val: x[i],
					set: func(d map[string]any, nv any) { parent(d).([]any)[i] = nv }})
				walk(x[i], child, key, func(d map[string]any) any { return parent(d).([]any)[i] })
			}
		}
	}
	walk(doc, "", "", func(d map[string]any) any { return d })
	return out
}

func kindOf(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case json.Number, float64, int:
		return "number"
	case bool:
		return "bool"
	}
	return "null"
}

// wrongTypes are values of every JSON type; each replaces every value of
// another type.
var wrongTypes = []any{json.Number("1"), json.Number("-2.5e3"), true, nil, "x", []any{}, []any{json.Number("1")}, map[string]any{}, map[string]any{"k": "v"}}

// required members by type (docs/schemas/), besides the envelope's.
var requiredData = map[string][]string{
	"privacy.subject.registered": {"residence"},
	"privacy.notice.published":   {"version", "effective"},
	"privacy.consent.granted":    {"consent_id", "notice_version", "purposes", "categories"},
	"privacy.data.collected":     {"categories", "purpose", "storage_region", "retention"},
	"privacy.data.used":          {"categories", "purpose"},
	"privacy.data.shared":        {"recipient", "recipient_kind", "basis", "categories", "purpose", "region"},
	"privacy.data.transferred":   {"transfer_id", "recipient", "from_region", "to_region", "categories", "purpose"},
	"privacy.rights.requested":   {"request_id", "right"},
	"privacy.rights.completed":   {"request_id", "outcome"},
	"privacy.data.corrected":     {"categories"},
	"privacy.data.erased":        {"scope", "reason"},
}

// badTerms are values outside the vocabulary or format of a member.
func badTerms(typ, key string, now time.Time) []string {
	regions := []string{"ZZ", "EU", "UK", "XK", "cn", "CHN", "C N", ""}
	switch key {
	case "categories", "cookies":
		return []string{"identity.unknown", "Identity.Contact", "identity", "cookie.tracking", ""}
	case "purposes", "purpose":
		return []string{"marketing", "Service_Provision", "service provision", ""}
	case "destinations", "residence", "storage_region", "region", "from_region", "to_region":
		return regions
	case "recipient_kind":
		return []string{"partner", "Affiliate", ""}
	case "basis":
		return []string{"legitimate_interest", "contract", ""}
	case "right":
		return []string{"erasure", "objection", ""}
	case "outcome":
		return []string{"partial", "Fulfilled", ""}
	case "mechanism":
		return []string{"bcr", "adequacy", ""}
	case "scope":
		return []string{"everything", "All", ""}
	case "retention":
		return []string{"1 year", "P", "PT0S", "-P1D", "P1Y2", ""}
	case "effective", "expires":
		return []string{"tomorrow", "2026-13-01T00:00:00Z", "2026-11-01", ""}
	case "birth_date":
		return []string{"12/04/1990", "1990-02-30", now.AddDate(1, 0, 0).Format("2006-01-02"), "1800-01-01"}
	case "time":
		return []string{now.Add(25 * time.Hour).Format(time.RFC3339), "2026-11-01", "now", ""}
	case "specversion":
		return []string{"0.3", "1", "2.0", ""}
	case "datacontenttype":
		return []string{"text/plain", "application/xml", ""}
	case "type":
		return []string{"privacy.unknown", "Privacy.Data.Used", "custos.decision.denied", "custos.key.destroyed", "custos.policy.activated", ""}
	case "traceparent":
		return []string{"00-xyz", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}
	case "id", "consent_id", "transfer_id", "request_id":
		return []string{"", "a\u0000b", "tab\there", strings.Repeat("i", 257)}
	case "subject":
		return []string{"", "line\nbreak", strings.Repeat("s", 257)}
	case "reason":
		if typ == "privacy.data.erased" {
			return []string{"whim", "Request", ""}
		}
	case "ref":
		return []string{"", "a\u0000b"}
	case "relation":
		return []string{strings.Repeat("r", 4097), "bell\u0007"}
	case "details", "changes", "method":
		return []string{strings.Repeat("d", 4097)}
	}
	return nil
}

// eventBattery builds the requests that change one thing in a valid event.
func eventBattery(bases []base, tok string, now time.Time) []hostile {
	var xs []hostile
	add := func(b base, what string, doc map[string]any, field string) {
		xs = append(xs, hostile{name: b.typ + " " + what, token: tok, body: mustJSON(doc), status: 400, code: "invalid_event", field: field})
	}
	for _, b := range bases {
		for _, l := range leaves(b.doc) {
			// Wrong JSON types.
			for _, w := range wrongTypes {
				if kindOf(w) == kindOf(l.val) {
					continue
				}
				if k := kindOf(w); strings.HasPrefix(l.path, "data.fields.") && (k == "number" || k == "bool") {
					continue // a personal value may be any JSON scalar
				}
				doc := clone(b.doc).(map[string]any)
				l.set(doc, clone(w))
				if l.path == "source" && kindOf(w) != "string" {
					add(b, "source as "+kindOf(w), doc, "source")
					continue
				}
				add(b, fmt.Sprintf("%s as %s", l.path, mustJSON(w)), doc, l.path)
				if kindOf(w) == "array" {
					// A list where one string goes may be refused at its element.
					xs[len(xs)-1].orFld = l.path + "[0]"
				}
			}
			// Terms outside the vocabulary or format.
			if _, isStr := l.val.(string); isStr {
				for _, v := range badTerms(b.typ, l.key, now) {
					doc := clone(b.doc).(map[string]any)
					l.set(doc, v)
					add(b, fmt.Sprintf("%s = %.40q", l.path, v), doc, l.path)
				}
			}
			// Misspelt member names.
			if l.del != nil && !strings.Contains(l.path, "[") && !strings.HasPrefix(l.path, "data.fields.") {
				for _, alt := range []string{strings.ToUpper(l.key[:1]) + l.key[1:], l.key + "s", l.key[:len(l.key)-1], strings.ReplaceAll(l.key, "_", "-") + "-x"} {
					doc := clone(b.doc).(map[string]any)
					parentPath := strings.TrimSuffix(strings.TrimSuffix(l.path, l.key), ".")
					parent := doc
					if parentPath == "data" {
						parent = doc["data"].(map[string]any)
					} else if parentPath != "" {
						continue
					}
					if _, clash := parent[alt]; clash {
						continue
					}
					parent[alt] = parent[l.key]
					delete(parent, l.key)
					field := alt
					if parentPath != "" {
						field = parentPath + "." + alt
					}
					add(b, "misspelt "+l.path+" as "+alt, doc, field)
				}
			}
		}
		// Missing required members.
		req := []string{"specversion", "id", "source", "type", "time", "datacontenttype", "data"}
		for _, k := range req {
			doc := clone(b.doc).(map[string]any)
			delete(doc, k)
			add(b, "without "+k, doc, k)
		}
		for _, k := range requiredData[b.typ] {
			doc := clone(b.doc).(map[string]any)
			delete(doc["data"].(map[string]any), k)
			add(b, "without data."+k, doc, "data."+k)
		}
		doc := clone(b.doc).(map[string]any)
		if b.typ == "privacy.notice.published" {
			doc["subject"] = "user-1"
			add(b, "with a subject", doc, "subject")
		} else {
			delete(doc, "subject")
			add(b, "without subject", doc, "subject")
		}
		// Unknown members and extension attributes.
		for _, k := range []string{"colour", "partitionkey", "dataschema", "Data", "ID"} {
			doc := clone(b.doc).(map[string]any)
			doc[k] = "x"
			add(b, "unknown attribute "+k, doc, k)
		}
		for _, k := range []string{"colour", "subject", "Purpose", "note"} {
			doc := clone(b.doc).(map[string]any)
			if _, clash := doc["data"].(map[string]any)[k]; clash {
				continue
			}
			doc["data"].(map[string]any)[k] = "x"
			add(b, "unknown data member "+k, doc, "data."+k)
		}
		// A member name that could be personal data is not echoed.
		doc = clone(b.doc).(map[string]any)
		doc["data"].(map[string]any)["li.wei@example.cn"] = "x"
		add(b, "unknown data member with an unsafe name", doc, "data")
		// Duplicate members.
		body := mustJSON(b.doc)
		dupID := append([]byte(`{"id":"dup-1",`), body[1:]...)
		xs = append(xs, hostile{name: b.typ + " duplicate id", token: tok, body: dupID, status: 400, code: "invalid_event", field: "id"})
		// Deep nesting inside data.
		deep := strings.Repeat("[", 40) + "1" + strings.Repeat("]", 40)
		dd := bytes.Replace(body, []byte(`"data":{`), []byte(`"data":{"zz":`+deep+`,`), 1)
		xs = append(xs, hostile{name: b.typ + " nested 40 deep in data", token: tok, body: dd, status: 400, code: "invalid_event", anyFld: true})
	}
	return xs
}

// malformedBattery builds bodies that are not JSON events at all.
func malformedBattery(bases []base, tok string) []hostile {
	var xs []hostile
	bad := func(name string, body []byte) {
		xs = append(xs, hostile{name: name, token: tok, body: body, status: 400, code: "invalid_event", anyFld: true})
	}
	for _, b := range bases {
		body := mustJSON(b.doc)
		for cut := 0; cut < len(body); cut += 7 {
			bad(fmt.Sprintf("%s truncated at %d", b.typ, cut), body[:cut])
		}
		// Invalid UTF-8 inside string values and member names.
		for _, seq := range []string{"\xff", "\xc3\x28", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80"} {
			for _, target := range []string{`"id":"`, `"data":{"`, `"source":"`} {
				i := bytes.Index(body, []byte(target))
				if i < 0 {
					continue
				}
				j := i + len(target)
				mut := append(append(append([]byte{}, body[:j]...), seq...), body[j:]...)
				bad(fmt.Sprintf("%s invalid UTF-8 %x after %s", b.typ, seq, target), mut)
			}
		}
		bad(b.typ+" two documents", append(append([]byte{}, body...), body...))
		bad(b.typ+" BOM", append([]byte("\xef\xbb\xbf"), body...))
		bad(b.typ+" trailing comma", append(append([]byte{}, body[:len(body)-1]...), []byte(",}")...))
		bad(b.typ+" single quotes", bytes.ReplaceAll(body, []byte(`"`), []byte(`'`)))
		bad(b.typ+" comment", append([]byte("/* hi */"), body...))
		bad(b.typ+" as a batch in a single", append(append([]byte("["), body...), ']'))
	}
	for _, s := range []string{"", " ", "null", "true", "42", `"event"`, "[]", "{", "}", "{}", `{"specversion":NaN}`, `{"specversion":Infinity}`,
		`{"specversion":"1.0",}`, "{\"id\":\"a\nb\"}", `{"id":0x10}`, `{"a":1 "b":2}`, `{"data":{"age":1e400}}`} {
		bad(fmt.Sprintf("literal %q", s), []byte(s))
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 150 {
		n := 1 + rng.IntN(300)
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(rng.UintN(256))
		}
		if i%3 == 0 {
			b[0] = '{'
		}
		bad(fmt.Sprintf("random bytes #%d", i), b)
	}
	// Nesting far past the limit, in every shape.
	bad("100000 nested arrays", []byte(strings.Repeat("[", 100000)+strings.Repeat("]", 100000)))
	bad("1000 nested objects", []byte(strings.Repeat(`{"a":`, 1000)+"1"+strings.Repeat("}", 1000)))
	bad("unclosed 100000 nested objects", []byte(strings.Repeat(`{"a":`, 100000)))
	many := &bytes.Buffer{}
	many.WriteString(`{"specversion":"1.0","data":{`)
	for i := range 2000 {
		fmt.Fprintf(many, `"k%d":1,`, i)
	}
	many.WriteString(`"z":1}}`)
	bad("2000 members", many.Bytes())
	return xs
}

// Thousands of generated bad requests against a running server: each gets
// a 4xx JSON error of the right shape, none appends anything, and the
// server stays healthy and keeps appending good events.
func TestHostileInput(t *testing.T) {
	h := start(t)
	em := h.emitter()
	au := h.auditor()
	other := h.token("emitter", "https://other.example/app")
	revoked, err := h.admin.CreateToken(context.Background(), "emitter", shopSource)
	if err != nil {
		t.Fatal(err)
	}
	if a, err := doRaw(h.app.URL, hostile{method: http.MethodDelete, path: "/v1/tokens/" + revoked.ID, token: h.admin.Token}); err != nil || a.status != 200 {
		t.Fatalf("revoke: %v %d %s", err, a.status, a.raw)
	}
	// A slow client on the real server, at the same time as the battery.
	slow := make(chan string, 1)
	go func() { slow <- partialHeaders(h.app.URL, 5*time.Second+2*time.Second) }()

	h.register(em, "user-battery", uniq("reg"), 30)
	h.waitCheckpoint(int64(h.streamLen()))
	now := h.clock.Now()
	bases := loadBases(t, now)
	for _, b := range bases {
		a, err := doRaw(h.app.URL, hostile{path: "/v1/decisions", token: em.Token, body: mustJSON(b.doc)})
		if err != nil || a.status != 200 {
			t.Fatalf("base %s is not a valid event: %v %d %s", b.typ, err, a.status, a.raw)
		}
	}
	good := bases[1].doc // a registration
	goodBody := mustJSON(good)

	decisions := eventBattery(bases[:6], em.Token, now)
	for i := range decisions {
		decisions[i].path, decisions[i].name = "/v1/decisions", "decisions: "+decisions[i].name
	}
	groups := []struct {
		name string
		xs   []hostile
	}{
		{"one change to a valid event", eventBattery(bases, em.Token, now)},
		{"the same through /v1/decisions", decisions},
		{"not JSON, or not an event", malformedBattery(bases, em.Token)},
		{"size limits", limitsBattery(goodBody, em.Token, h.admin.Token)},
		{"tokens, roles and sources", authBattery(goodBody, em, au, other, revoked)},
		{"content types", mediaBattery(goodBody, em.Token)},
		{"binary mode", binaryBattery(em.Token, now)},
		{"other endpoints", readBattery(au.Token, h.admin.Token)},
	}
	var xs []hostile
	for _, g := range groups {
		t.Logf("%5d %s", len(g.xs), g.name)
		xs = append(xs, g.xs...)
	}
	if len(xs) < 1000 {
		t.Fatalf("only %d hostile requests", len(xs))
	}

	before := h.streamLen()
	started := time.Now()
	battery(t, h.app.URL, xs)
	t.Logf("%d hostile requests in %s", len(xs), time.Since(started).Round(time.Millisecond))
	if after := h.streamLen(); after != before {
		t.Errorf("the hostile requests appended %d records", after-before)
	}

	t.Run("batches", func(t *testing.T) { batchBattery(t, h, em, now) })

	if p := <-slow; p != "" {
		t.Errorf("slow client on the real server: %s", p)
	}
	// Still healthy.
	for _, path := range []string{"/healthz", "/readyz"} {
		a, err := doRaw(h.app.URL, hostile{method: http.MethodGet, path: path})
		if err != nil || a.status != 200 {
			t.Fatalf("%s after the battery: %v %d %s", path, err, a.status, a.raw)
		}
	}
	n := h.streamLen()
	h.mustAppend(em, h.ev("privacy.subject.registered", uniq("after"), "user-after", map[string]any{"residence": "CN", "age": 40}))
	if h.streamLen() != n+1 {
		t.Fatal("a good event after the battery was not appended")
	}
}

// limitsBattery: bodies past the size limit, and the limit's edge.
func limitsBattery(good []byte, tok, admin string) []hostile {
	var xs []hostile
	huge := func(n int) []byte {
		// A registration whose data carries a long unknown member.
		pad := n - len(good) - len(`"pad":"",`)
		return bytes.Replace(good, []byte(`"data":{`), []byte(`"data":{"pad":"`+strings.Repeat("p", pad)+`",`), 1)
	}
	over := huge(server.MaxBody + 1)
	edge := huge(server.MaxBody)
	xs = append(xs,
		hostile{name: "body of 1 MiB + 1", token: tok, body: over, status: 413, code: "payload_too_large"},
		hostile{name: "chunked body of 1 MiB + 1", token: tok, body: over, chunked: true, status: 413, code: "payload_too_large"},
		hostile{name: "body of 8 MiB", token: tok, body: huge(8 << 20), status: 413, code: "payload_too_large"},
		hostile{name: "batch of 1 MiB + 1", token: tok, ctype: "application/cloudevents-batch+json", body: append(append([]byte("["), over...), ']'), status: 413, code: "payload_too_large"},
		hostile{name: "decision of 1 MiB + 1", path: "/v1/decisions", token: tok, body: over, status: 413, code: "payload_too_large"},
		hostile{name: "token request of 1 MiB + 1", path: "/v1/tokens", token: admin, ctype: "application/json", body: over, status: 413, code: "payload_too_large"},
		// Exactly at the limit the body is read, and refused for what it holds.
		hostile{name: "body of exactly 1 MiB", token: tok, body: edge, status: 400, code: "invalid_event", field: "data.pad"},
	)
	return xs
}

// authBattery: missing, malformed, wrong and revoked tokens, and tokens
// outside the Bearer scheme (401; the scheme name itself is
// case-insensitive, RFC 7235); roles
// that may not use an endpoint and sources that are not the token's (403).
func authBattery(good []byte, em, au, other *client.Client, revoked *client.TokenCreated) []hostile {
	var xs []hostile
	id, _, _ := strings.Cut(strings.TrimPrefix(em.Token, "cst_"), "_")
	for _, a := range []string{"", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer cst_", "Bearer cst_0123456789abcdef_wrong",
		"Bearer cst_" + id + "_" + strings.Repeat("A", 43), "Bearer " + revoked.Token, em.Token, " " + em.Token, "Bearer " + em.Token + "x",
		"Token " + em.Token, "Bearer " + strings.Repeat("x", 20000), "Bearer cst_zzzzzzzzzzzzzzzz_x", "Bearer " + strings.ToUpper(em.Token)} {
		xs = append(xs, hostile{name: fmt.Sprintf("Authorization %.40q", a), auth: a, body: good, status: 401, code: "unauthorized"})
	}
	xs = append(xs, hostile{name: "token in the query", path: "/v1/events?token=" + url.QueryEscape(em.Token), body: good, status: 401, code: "unauthorized"})
	routes := [][2]string{{"POST", "/v1/events"}, {"POST", "/v1/decisions"}, {"GET", "/v1/events"}, {"GET", "/v1/subjects/u/state"},
		{"GET", "/v1/subjects/u/export"}, {"GET", "/v1/transfers"}, {"GET", "/v1/rights"}, {"GET", "/v1/checkpoint"}, {"GET", "/v1/checkpoints"},
		{"GET", "/v1/checkpoint/key"}, {"GET", "/v1/proofs/inclusion?seq=1"}, {"GET", "/v1/proofs/inclusions"}, {"GET", "/v1/proofs/consistency"},
		{"GET", "/v1/policy"}, {"POST", "/v1/tokens"}, {"GET", "/v1/tokens"}, {"DELETE", "/v1/tokens/x"}}
	for _, r := range routes {
		xs = append(xs, hostile{name: "no token " + r[0] + " " + r[1], method: r[0], path: r[1], status: 401, code: "unauthorized"},
			hostile{name: "revoked token " + r[0] + " " + r[1], method: r[0], path: r[1], token: revoked.Token, status: 401, code: "unauthorized"})
	}
	for _, r := range routes[2:] {
		xs = append(xs, hostile{name: "emitter on " + r[0] + " " + r[1], method: r[0], path: r[1], token: em.Token, ctype: "application/json", body: []byte(`{}`), status: 403, code: "forbidden"})
	}
	for _, r := range [][2]string{{"POST", "/v1/events"}, {"POST", "/v1/decisions"}, {"GET", "/v1/subjects/u/export"}, {"POST", "/v1/tokens"}, {"GET", "/v1/tokens"}, {"DELETE", "/v1/tokens/x"}} {
		xs = append(xs, hostile{name: "auditor on " + r[0] + " " + r[1], method: r[0], path: r[1], token: au.Token, body: good, status: 403, code: "forbidden"})
	}
	var doc map[string]any
	_ = json.Unmarshal(good, &doc)
	for _, src := range []string{"https://other.example/app", "https://shop.example/orders/", "https://shop.example/Orders", "urn:x"} {
		doc["source"] = src
		xs = append(xs, hostile{name: "foreign source " + src, token: em.Token, body: mustJSON(doc), status: 403, code: "forbidden"},
			hostile{name: "decision for foreign source " + src, path: "/v1/decisions", token: em.Token, body: mustJSON(doc), status: 403, code: "forbidden"})
	}
	xs = append(xs, hostile{name: "the shop's event from another source's token", token: other.Token, body: good, status: 403, code: "forbidden"})
	return xs
}

// mediaBattery: content types other than the CloudEvents and JSON ones.
func mediaBattery(good []byte, tok string) []hostile {
	var xs []hostile
	for _, ct := range []string{"-", "text/plain", "application/xml", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded",
		"application/cloudevents+xml", "application/octet-stream", "garbage", "application/json+cloudevents", "text/json", ";;;", "application/",
		"application/cloudevents-batch+xml", "text/html; charset=utf-8"} {
		xs = append(xs, hostile{name: "Content-Type " + ct, token: tok, ctype: ct, body: good, status: 415, code: "unsupported_media_type"},
			hostile{name: "decision Content-Type " + ct, path: "/v1/decisions", token: tok, ctype: ct, body: good, status: 415, code: "unsupported_media_type"})
	}
	return xs
}

// binaryBattery: binary-mode events (ce-* headers) with bad attributes.
func binaryBattery(tok string, now time.Time) []hostile {
	hdr := func(change map[string]string) map[string]string {
		m := map[string]string{"Ce-Specversion": "1.0", "Ce-Id": uniq("bin"), "Ce-Source": shopSource,
			"Ce-Type": "privacy.subject.registered", "Ce-Subject": "user-bin", "Ce-Time": now.Format(time.RFC3339)}
		for k, v := range change {
			if v == "" {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	data := []byte(`{"residence":"CN","age":30}`)
	var xs []hostile
	for _, c := range []struct {
		change map[string]string
		body   []byte
		field  string
	}{
		{map[string]string{"Ce-Id": ""}, data, "id"},
		{map[string]string{"Ce-Time": "yesterday"}, data, "time"},
		{map[string]string{"Ce-Time": now.Add(48 * time.Hour).Format(time.RFC3339)}, data, "time"},
		{map[string]string{"Ce-Type": "privacy.bogus"}, data, "type"},
		{map[string]string{"Ce-Type": "custos.key.destroyed"}, data, "type"},
		{map[string]string{"Ce-Specversion": "0.3"}, data, "specversion"},
		{map[string]string{"Ce-Subject": "%zz"}, data, "subject"},
		{map[string]string{"Ce-Subject": ""}, data, "subject"},
		{map[string]string{"Ce-Colour": "red"}, data, "colour"},
		{nil, []byte(`{"residence":"ZZ","age":30}`), "data.residence"},
		{nil, []byte(`{"residence":"CN","age":"30"}`), "data.age"},
		{nil, []byte(`{"residence":"CN"`), "data"},
		{nil, []byte(`not json`), "data"},
		{nil, []byte(strings.Repeat("[", 50) + strings.Repeat("]", 50)), "data[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"},
	} {
		xs = append(xs, hostile{name: fmt.Sprintf("binary mode %v %.30s", c.change, c.body), token: tok, ctype: "application/json",
			header: hdr(c.change), body: c.body, status: 400, code: "invalid_event", field: c.field})
	}
	xs = append(xs, hostile{name: "binary mode foreign source", token: tok, ctype: "application/json",
		header: hdr(map[string]string{"Ce-Source": "https://other.example/app"}), body: data, status: 403, code: "forbidden"})
	return xs
}

// readBattery: bad queries and bodies on the other endpoints.
func readBattery(au, admin string) []hostile {
	get := func(path string, status int, code string) hostile {
		return hostile{name: "GET " + path, method: http.MethodGet, path: path, token: au, status: status, code: code}
	}
	xs := []hostile{
		get("/v1/proofs/inclusion?seq=abc", 400, "invalid_request"),
		get("/v1/proofs/inclusion?seq=-1", 400, "invalid_request"),
		get("/v1/proofs/inclusion?seq=0", 400, "invalid_request"),
		get("/v1/proofs/inclusion?seq=1&tree_size=99999999", 400, "invalid_request"),
		get("/v1/proofs/inclusion?seq=99999999999999999999", 400, "invalid_request"),
		get("/v1/proofs/inclusions?from_seq=5&to_seq=2", 400, "invalid_request"),
		get("/v1/proofs/consistency?from=5&to=2", 400, "invalid_request"),
		get("/v1/proofs/consistency?from=1&to=99999999", 400, "invalid_request"),
		get("/v1/events?since=yesterday", 400, "invalid_request"),
		get("/v1/events?type=privacy.bogus", 400, "invalid_request"),
		get("/v1/events?from_seq=-1", 400, "invalid_request"),
		get("/v1/subjects/u/state?at=notatime", 400, "invalid_request"),
		get("/v1/transfers?from=notatime", 400, "invalid_request"),
		get("/v1/nope", 404, "not_found"),
		get("/v2/events", 404, "not_found"),
		{name: "PUT /v1/events", method: http.MethodPut, path: "/v1/events", token: au, body: []byte("{}")},
		{name: "PATCH /v1/tokens/x", method: http.MethodPatch, path: "/v1/tokens/x", token: admin, body: []byte("{}")},
		{name: "DELETE unknown token", method: http.MethodDelete, path: "/v1/tokens/0123456789abcdef", token: admin, status: 404, code: "not_found"},
	}
	for _, b := range []string{"", "not json", `{"role":"god"}`, `{"role":"emitter"}`, `{"role":"auditor","extra":1}`, `{"role":1}`, `[]`, `{"role":"auditor"} {}`} {
		xs = append(xs, hostile{name: "token request " + b, path: "/v1/tokens", token: admin, ctype: "application/json", body: []byte(b), status: 400})
	}
	return xs
}

// batchBattery: batches mixing good and bad events answer 200 with one
// well-formed result per event; each bad one fails on its own.
func batchBattery(t *testing.T, h *harness, em *client.Client, now time.Time) {
	ev := func(id string) map[string]any {
		return h.ev("privacy.subject.registered", id, "user-"+id, map[string]any{"residence": "CN", "age": 30})
	}
	g1, g2 := ev(uniq("b")), ev(uniq("b"))
	wrongType := ev(uniq("b"))
	wrongType["data"].(map[string]any)["age"] = "thirty"
	unknown := ev(uniq("b"))
	unknown["colour"] = "red"
	foreign := ev(uniq("b"))
	foreign["source"] = "https://other.example/app"
	internal := ev(uniq("b"))
	internal["type"] = "custos.decision.denied"
	conflict := clone(g1).(map[string]any)
	conflict["data"].(map[string]any)["age"] = 31
	entries := []json.RawMessage{mustJSON(g1), mustJSON(wrongType), mustJSON(g2), mustJSON(unknown), []byte(`42`), []byte(`"x"`),
		mustJSON(foreign), mustJSON(internal), mustJSON(g1), mustJSON(conflict), []byte(`{"specversion":"1.0"}`)}
	want := []int{201, 400, 201, 400, 400, 400, 403, 400, 200, 409, 400}

	n := h.streamLen()
	res := h.send(em, "application/cloudevents-batch+json", mustJSON(entries))
	if res.Status != 200 {
		t.Fatalf("mixed batch: %d %s", res.Status, res.Raw)
	}
	var body struct {
		Results []struct {
			Status   int             `json:"status"`
			Seq      uint64          `json:"seq"`
			LeafHash string          `json:"leaf_hash"`
			Error    apiError        `json:"error"`
			Decision json.RawMessage `json:"decision"`
		} `json:"results"`
	}
	if err := json.Unmarshal(res.Raw, &body); err != nil || len(body.Results) != len(entries) {
		t.Fatalf("mixed batch answer: %v %s", err, res.Raw)
	}
	for i, r := range body.Results {
		if r.Status != want[i] {
			t.Errorf("entry %d: status %d, want %d", i, r.Status, want[i])
		}
		if r.Status < 300 {
			if r.Seq == 0 || r.LeafHash == "" || r.Error != nil {
				t.Errorf("entry %d: good result not a receipt: %+v", i, r)
			}
			continue
		}
		if r.Error == nil {
			t.Errorf("entry %d: failed without an error", i)
		} else if p := checkErrorBody(r.Status, r.Error); p != "" {
			t.Errorf("entry %d: %s", i, p)
		}
	}
	if got := h.streamLen() - n; got != 2 {
		t.Errorf("mixed batch appended %d records, want 2", got)
	}

	// Batches that are bad as a whole append nothing.
	many := make([]json.RawMessage, 1001)
	for i := range many {
		many[i] = mustJSON(ev(uniq("many")))
	}
	n = h.streamLen()
	var xs []hostile
	for name, b := range map[string][]byte{
		"empty batch": []byte(`[]`), "object batch": mustJSON(g1), "1001 events": mustJSON(many), "truncated batch": []byte(`[{"a":1},`),
		"batch then garbage": []byte(`[{}] x`), "deep batch": []byte(strings.Repeat("[", 20000) + strings.Repeat("]", 20000)),
		"not JSON": []byte("\xff\xfe"), "empty body": nil,
	} {
		if b == nil {
			b = []byte{}
		}
		xs = append(xs, hostile{name: name, token: em.Token, ctype: "application/cloudevents-batch+json", body: b, status: 400, code: "invalid_event", anyFld: true})
	}
	battery(t, h.app.URL, xs)
	// All bad entries: 200, nothing appended.
	res = h.send(em, "application/cloudevents-batch+json", mustJSON([]json.RawMessage{mustJSON(wrongType), []byte(`[[[[]]]]`), mustJSON(foreign)}))
	if res.Status != 200 || !strings.Contains(string(res.Raw), `"status":400`) || !strings.Contains(string(res.Raw), `"status":403`) {
		t.Errorf("batch of bad entries: %d %s", res.Status, res.Raw)
	}
	if got := h.streamLen() - n; got != 0 {
		t.Errorf("bad batches appended %d records", got)
	}
}

// partialHeaders dials a server, sends half a request line and headers
// that never end, and reports "" if the server closes the connection
// within limit.
func partialHeaders(base string, limit time.Duration) string {
	u, _ := url.Parse(base)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		return err.Error()
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "POST /v1/events HTTP/1.1\r\nHost: custos\r\nContent-Type: applica"); err != nil {
		return err.Error()
	}
	_ = conn.SetReadDeadline(time.Now().Add(limit))
	n, err := bufio.NewReader(conn).Read(make([]byte, 1024))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return fmt.Sprintf("connection still open after %s", limit)
	}
	if err == nil {
		return fmt.Sprintf("server answered %d bytes instead of closing", n)
	}
	return ""
}

// The API server bounds slow clients: headers must arrive within
// ReadHeaderTimeout, the whole request within ReadTimeout.
func TestSlowClientCutOff(t *testing.T) {
	srv := server.HTTPServer("127.0.0.1:0", server.New(server.Config{}))
	if srv.ReadHeaderTimeout <= 0 || srv.ReadHeaderTimeout > 10*time.Second || srv.ReadTimeout <= 0 || srv.IdleTimeout <= 0 ||
		srv.MaxHeaderBytes <= 0 || srv.MaxHeaderBytes > 1<<20 {
		t.Fatalf("HTTPServer limits: header %s, read %s, idle %s, header bytes %d", srv.ReadHeaderTimeout, srv.ReadTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
	}
	const timeout = 300 * time.Millisecond
	fast := server.HTTPServer("127.0.0.1:0", server.New(server.Config{}), server.WithReadHeaderTimeout(timeout))
	if fast.ReadHeaderTimeout != timeout {
		t.Fatalf("ReadHeaderTimeout %s, want %s", fast.ReadHeaderTimeout, timeout)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = fast.Serve(ln) }()
	t.Cleanup(func() { _ = fast.Close() })
	base := "http://" + ln.Addr().String()
	if a, err := doRaw(base, hostile{method: http.MethodGet, path: "/healthz"}); err != nil || a.status != 200 {
		t.Fatalf("healthz: %v %d", err, a.status)
	}
	started := time.Now()
	if p := partialHeaders(base, 5*time.Second); p != "" {
		t.Fatal(p)
	}
	if took := time.Since(started); took < timeout || took > 4*time.Second {
		t.Fatalf("cut off after %s, want about %s", took, timeout)
	}
}

// A token past its rate gets 429 with Retry-After; other tokens are not
// affected, and the token recovers.
func TestRateLimit(t *testing.T) {
	h := start(t, func(c *app.Config) { c.RatePerToken = 5 })
	em := h.emitter()
	au := h.auditor()
	var limited answer
	for i := 0; i < 200; i++ {
		a, err := doRaw(h.app.URL, hostile{token: em.Token, body: []byte(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		if a.status == http.StatusTooManyRequests {
			limited = a
			break
		}
		if a.status != 400 {
			t.Fatalf("request %d: %d %s", i, a.status, a.raw)
		}
	}
	if p := judge(hostile{status: 429, code: "rate_limited"}, limited); p != "" {
		t.Fatalf("no proper 429 within 200 requests at 5/s: %s %s", p, limited.raw)
	}
	ra, err := strconv.Atoi(limited.header.Get("Retry-After"))
	if err != nil || ra < 1 {
		t.Fatalf("Retry-After %q", limited.header.Get("Retry-After"))
	}
	// Another token is not slowed down by this one.
	if a, _ := doRaw(h.app.URL, hostile{method: http.MethodGet, path: "/v1/checkpoint/key", token: au.Token}); a.status != 200 {
		t.Fatalf("another token: %d %s", a.status, a.raw)
	}
	// Refused requests do not spend the budget: the token recovers.
	waitFor(t, "the limited token to recover", func() bool {
		a, _ := doRaw(h.app.URL, hostile{token: em.Token, body: []byte(`{}`)})
		return a.status == 400
	})
}
