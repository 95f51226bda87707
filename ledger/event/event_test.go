package event_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"custos.dev/ledger/event"
)

// now is when the tests receive events: after every example's time.
var now = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

// examples returns testdata/valid, keyed by file name.
func examples(t testing.TB) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "valid", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	out := make(map[string][]byte)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	return out
}

func TestValidExamples(t *testing.T) {
	seen := map[string]bool{}
	for name, b := range examples(t) {
		t.Run(name, func(t *testing.T) {
			e, err := event.Decode(b, now)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !strings.HasSuffix(name, e.Type+".json") {
				t.Errorf("file %s holds a %s", name, e.Type)
			}
			seen[e.Type] = true
			if want := reflect.TypeOf(event.NewData(e.Type)); reflect.TypeOf(e.Data) != want {
				t.Errorf("Data is %T, want %v", e.Data, want)
			}
			if e.Subject != "" && e.Subject != "user-1001" {
				t.Errorf("subject = %q, want user-1001", e.Subject)
			}
			// What Decode returns marshals back to an event Decode accepts
			// unchanged: services re-encode decoded events.
			out, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			e2, err := event.Decode(out, now)
			if err != nil {
				t.Fatalf("re-decoding the marshalled event: %v", err)
			}
			if !reflect.DeepEqual(e, e2) {
				t.Errorf("round trip changed the event:\n%+v\n%+v", e, e2)
			}
		})
	}
	for _, typ := range event.Types() {
		if !seen[typ] {
			t.Errorf("no example of %s in testdata/valid", typ)
		}
	}
}

func TestExampleContents(t *testing.T) {
	decode := func(name string) *event.Event {
		t.Helper()
		e, err := event.Decode(examples(t)[name], now)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	reg := decode("02-privacy.subject.registered.json").Data.(*event.SubjectRegistered)
	if reg.Residence != "CN" || reg.BirthDate != "1990-04-12" || reg.Age != nil {
		t.Errorf("registered = %+v", reg)
	}
	e := decode("03-privacy.consent.granted.json")
	c := e.Data.(*event.ConsentGranted)
	if !slices.Equal(c.Destinations, []string{"SG"}) || c.Expires == nil || !c.Expires.Equal(time.Date(2027, 11, 1, 8, 5, 0, 0, time.UTC)) {
		t.Errorf("consent = %+v", c)
	}
	if e.TraceParent != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Errorf("traceparent = %q", e.TraceParent)
	}
	tr := decode("07-privacy.data.transferred.json").Data.(*event.DataTransferred)
	if tr.FromRegion != "CN" || tr.ToRegion != "SG" || tr.Mechanism != "standard_contract" {
		t.Errorf("transfer = %+v", tr)
	}
	col := decode("04-privacy.data.collected.json").Data.(*event.DataCollected)
	if string(col.Fields["email"]) != `"li.wei@example.cn"` || col.Retention != "P1Y" {
		t.Errorf("collected = %+v", col)
	}
	er := decode("12-privacy.data.erased.json").Data.(*event.DataErased)
	if !er.Scope.All || er.Scope.Categories != nil || er.Reason != "request" {
		t.Errorf("erased = %+v", er)
	}
	n := decode("01-privacy.notice.published.json")
	if n.Subject != "" || !n.Data.(*event.NoticePublished).Effective.Equal(time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("notice = %+v", n)
	}
}

// attrs is an event under construction, as ordered raw JSON members, so
// tests can produce exactly the document they mean (duplicates, order,
// wrong types).
type attrs [][2]string

func base(typ, data string) attrs {
	a := attrs{
		{"specversion", `"1.0"`},
		{"id", `"evt-1"`},
		{"source", `"https://shop.example.cn/privacy"`},
		{"type", `"` + typ + `"`},
		{"subject", `"user-1001"`},
		{"time", `"2026-11-29T09:00:00Z"`},
		{"datacontenttype", `"application/json"`},
		{"data", data},
	}
	if typ == event.TypeNoticePublished {
		a = a.without("subject")
	}
	return a
}

// with replaces the member k, or adds it before data.
func (a attrs) with(k, raw string) attrs {
	out := slices.Clone(a)
	for i := range out {
		if out[i][0] == k {
			out[i][1] = raw
			return out
		}
	}
	return slices.Insert(out, len(out)-1, [2]string{k, raw})
}

func (a attrs) without(k string) attrs {
	return slices.DeleteFunc(slices.Clone(a), func(m [2]string) bool { return m[0] == k })
}

func (a attrs) String() string {
	var b strings.Builder
	b.WriteString("{")
	for i, m := range a {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"` + m[0] + `":` + m[1])
	}
	b.WriteString("}")
	return b.String()
}

// Valid data for each type, used as the starting point of bad inputs.
const (
	registered  = `{"residence":"CN","birth_date":"1990-04-12"}`
	notice      = `{"version":"2.0","effective":"2026-10-01T00:00:00Z"}`
	granted     = `{"consent_id":"c-1","notice_version":"2.0","purposes":["service_provision"],"categories":["identity.contact"]}`
	collected   = `{"categories":["identity.contact"],"purpose":"service_provision","storage_region":"CN","retention":"P1Y","fields":{"email":"li.wei@example.cn"}}`
	shared      = `{"recipient":"acme","recipient_kind":"service_provider","basis":"service_provider","categories":["identity.contact"],"purpose":"service_provision","region":"CN"}`
	transferred = `{"transfer_id":"tr-1","recipient":"acme-sg","from_region":"CN","to_region":"SG","categories":["identity.contact"],"purpose":"customer_support","mechanism":"standard_contract"}`
)

func ev(typ, data string) string { return base(typ, data).String() }

func TestBaseInputsAreValid(t *testing.T) {
	for typ, data := range map[string]string{
		event.TypeSubjectRegistered: registered, event.TypeNoticePublished: notice,
		event.TypeConsentGranted: granted, event.TypeDataCollected: collected,
		event.TypeDataShared: shared, event.TypeDataTransferred: transferred,
	} {
		if _, err := event.Decode([]byte(ev(typ, data)), now); err != nil {
			t.Errorf("%s: %v", typ, err)
		}
	}
}

type badCase struct {
	name  string
	body  string
	field string
	// secret, when set, is the offending value: the error must not show it.
	secret string
	// msg, when set, must appear in the message.
	msg string
}

func badInputs() []badCase {
	tr := func(data string) string { return ev(event.TypeDataTransferred, data) }
	col := func(data string) string { return ev(event.TypeDataCollected, data) }
	reg := func(data string) string { return ev(event.TypeSubjectRegistered, data) }
	con := func(data string) string { return ev(event.TypeConsentGranted, data) }
	wd := func(data string) string { return ev(event.TypeConsentWithdrawn, data) }
	sh := func(data string) string { return ev(event.TypeDataShared, data) }
	er := func(data string) string { return ev(event.TypeDataErased, data) }
	not := func(data string) string { return ev(event.TypeNoticePublished, data) }
	rq := func(data string) string { return ev(event.TypeRightsRequested, data) }
	trBase := base(event.TypeDataTransferred, transferred)
	long := strings.Repeat("x", 4097)
	return []badCase{
		// The envelope.
		{name: "not an object", body: `["event"]`, field: ""},
		{name: "empty body", body: ` `, field: ""},
		{name: "malformed JSON", body: `{"specversion":"1.0",`, field: ""},
		{name: "trailing data", body: tr(transferred) + `{}`, field: ""},
		{name: "specversion 0.3", body: trBase.with("specversion", `"0.3"`).String(), field: "specversion", secret: "0.3"},
		{name: "specversion number", body: trBase.with("specversion", `1.0`).String(), field: "specversion"},
		{name: "specversion missing", body: trBase.without("specversion").String(), field: "specversion", msg: "required"},
		{name: "id empty", body: trBase.with("id", `""`).String(), field: "id"},
		{name: "id too long", body: trBase.with("id", `"`+strings.Repeat("e", 257)+`"`).String(), field: "id"},
		{name: "id control char", body: trBase.with("id", `"evt-secret\u0007"`).String(), field: "id", secret: "evt-secret"},
		{name: "id null", body: trBase.with("id", `null`).String(), field: "id"},
		{name: "source with space", body: trBase.with("source", `"shop secret source"`).String(), field: "source", secret: "secret source"},
		{name: "source bad escape", body: trBase.with("source", `"https://shop.example.cn/%zz"`).String(), field: "source"},
		{name: "type unknown", body: trBase.with("type", `"privacy.data.sold"`).String(), field: "type", secret: "privacy.data.sold"},
		{name: "type custos", body: trBase.with("type", `"custos.decision.denied"`).String(), field: "type", msg: "emitters may not send"},
		{name: "type custos other", body: trBase.with("type", `"custos.key.destroyed"`).String(), field: "type", msg: "emitters may not send"},
		{name: "type missing", body: trBase.without("type").String(), field: "type", msg: "required"},
		{name: "subject missing", body: trBase.without("subject").String(), field: "subject", msg: "required"},
		{name: "subject empty", body: trBase.with("subject", `""`).String(), field: "subject"},
		{name: "subject on notice", body: base(event.TypeNoticePublished, notice).with("subject", `"user-1001"`).String(), field: "subject", msg: "not allowed for this type", secret: "user-1001"},
		{name: "subject too long", body: trBase.with("subject", `"`+strings.Repeat("u", 257)+`"`).String(), field: "subject"},
		{name: "subject newline", body: trBase.with("subject", `"user-secret\n1"`).String(), field: "subject", secret: "user-secret"},
		{name: "time not RFC 3339", body: trBase.with("time", `"29/11/2026"`).String(), field: "time", secret: "29/11/2026"},
		{name: "time without zone", body: trBase.with("time", `"2026-11-29T09:00:00"`).String(), field: "time"},
		{name: "time in 2 days", body: trBase.with("time", `"2026-12-01T10:00:00Z"`).String(), field: "time", msg: "24 hours"},
		{name: "time missing", body: trBase.without("time").String(), field: "time", msg: "required"},
		{name: "time number", body: trBase.with("time", `1764406800`).String(), field: "time"},
		{name: "datacontenttype text", body: trBase.with("datacontenttype", `"text/plain"`).String(), field: "datacontenttype"},
		{name: "datacontenttype latin1", body: trBase.with("datacontenttype", `"application/json; charset=latin1"`).String(), field: "datacontenttype"},
		{name: "datacontenttype missing", body: trBase.without("datacontenttype").String(), field: "datacontenttype", msg: "required"},
		{name: "dataschema", body: trBase.with("dataschema", `"https://x.example/s"`).String(), field: "dataschema", msg: "traceparent and tracestate"},
		{name: "extension", body: trBase.with("partitionkey", `"p"`).String(), field: "partitionkey"},
		{name: "misspelt attribute", body: trBase.with("subjcet", `"user-1001"`).String(), field: "subjcet"},
		{name: "attribute wrong case", body: trBase.without("type").with("Type", `"privacy.data.transferred"`).String(), field: "Type"},
		{name: "unknown attribute named like an email", body: trBase.with("li.wei@example.cn", `1`).String(), field: "", secret: "li.wei@example.cn"},
		{name: "data_base64", body: trBase.with("data_base64", `"e30="`).String(), field: "data_base64"},
		{name: "traceparent bad", body: trBase.with("traceparent", `"00-xyz"`).String(), field: "traceparent"},
		{name: "traceparent zero trace id", body: trBase.with("traceparent", `"00-00000000000000000000000000000000-00f067aa0ba902b7-01"`).String(), field: "traceparent"},
		{name: "tracestate control", body: trBase.with("tracestate", `"a=b\u0001"`).String(), field: "tracestate"},
		{name: "data array", body: trBase.with("data", `[]`).String(), field: "data"},
		{name: "data string", body: trBase.with("data", `"{}"`).String(), field: "data"},
		{name: "data missing", body: trBase.without("data").String(), field: "data", msg: "required"},
		{name: "data null", body: trBase.with("data", `null`).String(), field: "data"},

		// privacy.data.transferred.
		{name: "to_region ZZ", body: tr(strings.Replace(transferred, `"to_region":"SG"`, `"to_region":"ZZ"`, 1)), field: "data.to_region"},
		{name: "to_region XK", body: tr(strings.Replace(transferred, `"to_region":"SG"`, `"to_region":"XK"`, 1)), field: "data.to_region"},
		{name: "from_region lower case", body: tr(strings.Replace(transferred, `"from_region":"CN"`, `"from_region":"cn"`, 1)), field: "data.from_region"},
		{name: "to_region number", body: tr(strings.Replace(transferred, `"to_region":"SG"`, `"to_region":65`, 1)), field: "data.to_region", msg: "string"},
		{name: "unknown category", body: tr(strings.Replace(transferred, `["identity.contact"]`, `["identity.contact","identity.secretcat"]`, 1)), field: "data.categories[1]", secret: "identity.secretcat"},
		{name: "categories empty", body: tr(strings.Replace(transferred, `["identity.contact"]`, `[]`, 1)), field: "data.categories"},
		{name: "categories duplicate", body: tr(strings.Replace(transferred, `["identity.contact"]`, `["identity.contact","identity.basic","identity.contact"]`, 1)), field: "data.categories[2]", msg: "duplicate"},
		{name: "categories not strings", body: tr(strings.Replace(transferred, `["identity.contact"]`, `["identity.contact",7]`, 1)), field: "data.categories[1]"},
		{name: "categories a string", body: tr(strings.Replace(transferred, `["identity.contact"]`, `"identity.contact"`, 1)), field: "data.categories"},
		{name: "categories empty string", body: tr(strings.Replace(transferred, `["identity.contact"]`, `[""]`, 1)), field: "data.categories[0]"},
		{name: "cookie category in transfer is fine but unknown purpose is not", body: tr(strings.Replace(transferred, `"customer_support"`, `"marketing"`, 1)), field: "data.purpose"},
		{name: "purpose null", body: tr(strings.Replace(transferred, `"customer_support"`, `null`, 1)), field: "data.purpose"},
		{name: "mechanism unknown", body: tr(strings.Replace(transferred, `"standard_contract"`, `"adequacy"`, 1)), field: "data.mechanism"},
		{name: "transfer_id missing", body: tr(strings.Replace(transferred, `"transfer_id":"tr-1",`, ``, 1)), field: "data.transfer_id", msg: "required"},
		{name: "misspelt data field", body: tr(strings.Replace(transferred, `"to_region"`, `"to_regoin"`, 1)), field: "data.to_regoin"},
		{name: "data field wrong case", body: tr(strings.Replace(transferred, `"purpose"`, `"Purpose"`, 1)), field: "data.Purpose"},
		{name: "recipient too long", body: tr(strings.Replace(transferred, `"acme-sg"`, `"`+long+`"`, 1)), field: "data.recipient"},
		{name: "first bad field in document order", body: tr(`{"purpose":"bad-purpose","categories":["bad-category"]}`), field: "data.purpose"},
		{name: "first bad field in document order, reversed", body: tr(`{"categories":["bad-category"],"purpose":"bad-purpose"}`), field: "data.categories[0]"},

		// privacy.data.collected.
		{name: "retention prose", body: col(strings.Replace(collected, `"P1Y"`, `"one year"`, 1)), field: "data.retention", secret: "one year"},
		{name: "retention P", body: col(strings.Replace(collected, `"P1Y"`, `"P"`, 1)), field: "data.retention"},
		{name: "retention zero", body: col(strings.Replace(collected, `"P1Y"`, `"P0D"`, 1)), field: "data.retention"},
		{name: "storage_region EU", body: col(strings.Replace(collected, `"storage_region":"CN"`, `"storage_region":"EU"`, 1)), field: "data.storage_region"},
		{name: "field value an object", body: col(strings.Replace(collected, `"li.wei@example.cn"`, `{"v":"li.wei@example.cn"}`, 1)), field: "data.fields.email", secret: "li.wei"},
		{name: "field value null", body: col(strings.Replace(collected, `"li.wei@example.cn"`, `null`, 1)), field: "data.fields.email"},
		{name: "field value array", body: col(strings.Replace(collected, `"li.wei@example.cn"`, `["a"]`, 1)), field: "data.fields.email"},
		{name: "field name upper case", body: col(strings.Replace(collected, `"email"`, `"Email"`, 1)), field: "data.fields", secret: "li.wei"},
		{name: "field name an email", body: col(strings.Replace(collected, `"email"`, `"li.wei@example.cn"`, 1)), field: "data.fields", secret: "li.wei"},
		{name: "fields empty", body: col(strings.Replace(collected, `{"email":"li.wei@example.cn"}`, `{}`, 1)), field: "data.fields"},
		{name: "fields too many", body: col(strings.Replace(collected, `{"email":"li.wei@example.cn"}`, manyFields(65), 1)), field: "data.fields"},
		{name: "field value too long", body: col(strings.Replace(collected, `"li.wei@example.cn"`, `"secret`+long+`"`, 1)), field: "data.fields.email", secret: "secretxxx"},
		{name: "field value invalid UTF-8", body: col(strings.Replace(collected, `"li.wei@example.cn"`, "\"li.wei\xff\"", 1)), field: "data.fields.email", secret: "li.wei"},
		{name: "fields an array", body: col(strings.Replace(collected, `{"email":"li.wei@example.cn"}`, `["li.wei@example.cn"]`, 1)), field: "data.fields", secret: "li.wei"},

		// privacy.subject.registered.
		{name: "residence UK", body: reg(`{"residence":"UK"}`), field: "data.residence"},
		{name: "residence missing", body: reg(`{"age":30}`), field: "data.residence", msg: "required"},
		{name: "birth_date not a date", body: reg(`{"residence":"CN","birth_date":"1990-02-30"}`), field: "data.birth_date", secret: "1990-02-30"},
		{name: "birth_date format", body: reg(`{"residence":"CN","birth_date":"12/04/1990"}`), field: "data.birth_date", secret: "12/04/1990"},
		{name: "birth_date future", body: reg(`{"residence":"CN","birth_date":"2027-01-01"}`), field: "data.birth_date", secret: "2027"},
		{name: "birth_date ancient", body: reg(`{"residence":"CN","birth_date":"1800-01-01"}`), field: "data.birth_date"},
		{name: "age too high", body: reg(`{"residence":"CN","age":151}`), field: "data.age", secret: "151"},
		{name: "age negative", body: reg(`{"residence":"CN","age":-1}`), field: "data.age"},
		{name: "age fraction", body: reg(`{"residence":"CN","age":17.5}`), field: "data.age", secret: "17.5"},
		{name: "age string", body: reg(`{"residence":"CN","age":"17"}`), field: "data.age"},
		{name: "age and birth_date", body: reg(`{"residence":"CN","birth_date":"2010-01-01","age":16}`), field: "data.age"},
		{name: "guardian ref empty", body: reg(`{"residence":"CN","age":12,"guardian":{"ref":"","relation":"mother"}}`), field: "data.guardian.ref"},
		{name: "guardian relation missing", body: reg(`{"residence":"CN","age":12,"guardian":{"ref":"user-900"}}`), field: "data.guardian.relation", msg: "required"},
		{name: "guardian extra member", body: reg(`{"residence":"CN","age":12,"guardian":{"ref":"user-900","relation":"mother","name":"Li"}}`), field: "data.guardian.name"},
		{name: "guardian a string", body: reg(`{"residence":"CN","age":12,"guardian":"user-900"}`), field: "data.guardian", secret: "user-900"},

		// privacy.consent.granted.
		{name: "cookies not a cookie class", body: con(strings.Replace(granted, `}`, `,"cookies":["identity.basic"]}`, 1)), field: "data.cookies[0]"},
		{name: "cookies unknown", body: con(strings.Replace(granted, `}`, `,"cookies":["cookie.tracking"]}`, 1)), field: "data.cookies[0]"},
		{name: "destination XK", body: con(strings.Replace(granted, `}`, `,"destinations":["SG","XK"]}`, 1)), field: "data.destinations[1]"},
		{name: "destinations empty", body: con(strings.Replace(granted, `}`, `,"destinations":[]}`, 1)), field: "data.destinations"},
		{name: "recipients empty string", body: con(strings.Replace(granted, `}`, `,"recipients":[""]}`, 1)), field: "data.recipients[0]"},
		{name: "expires before time", body: con(strings.Replace(granted, `}`, `,"expires":"2026-11-29T08:00:00Z"}`, 1)), field: "data.expires"},
		{name: "expires equal to time", body: con(strings.Replace(granted, `}`, `,"expires":"2026-11-29T09:00:00Z"}`, 1)), field: "data.expires"},
		{name: "expires prose", body: con(strings.Replace(granted, `}`, `,"expires":"next year"}`, 1)), field: "data.expires"},
		{name: "purposes missing", body: con(`{"consent_id":"c-1","notice_version":"2.0","categories":["identity.contact"]}`), field: "data.purposes", msg: "required"},
		{name: "method empty", body: con(strings.Replace(granted, `}`, `,"method":""}`, 1)), field: "data.method"},
		{name: "lone high surrogate", body: con(strings.Replace(granted, `"notice_version":"2.0"`, `"notice_version":"2.0\ud800"`, 1)), field: "data.notice_version", msg: "lone UTF-16 surrogate"},
		{name: "lone low surrogate", body: con(strings.Replace(granted, `"notice_version":"2.0"`, `"notice_version":"\udc00x"`, 1)), field: "data.notice_version", msg: "lone UTF-16 surrogate"},
		{name: "reversed surrogates", body: con(strings.Replace(granted, `"notice_version":"2.0"`, `"notice_version":"\ude00\ud83d"`, 1)), field: "data.notice_version", msg: "lone UTF-16 surrogate"},
		{name: "method free text", body: con(strings.Replace(granted, `}`, `,"method":"phoned Li Wei on 13900000000"}`, 1)), field: "data.method", msg: "not a known consent method"},
		{name: "guardian relation free text", body: con(strings.Replace(granted, `}`, `,"guardian":{"ref":"g-1","relation":"Wang Fang, her aunt"}}`, 1)), field: "data.guardian.relation", msg: "not a known guardian relation"},

		// privacy.consent.withdrawn.
		{name: "withdrawal consent_id and scope", body: wd(`{"consent_id":"c-1","purposes":["notifications"]}`), field: "data.purposes"},
		{name: "withdrawal empty list", body: wd(`{"purposes":[]}`), field: "data.purposes"},
		{name: "withdrawal cookie not cookie", body: wd(`{"cookies":["usage.device"]}`), field: "data.cookies[0]"},

		// privacy.data.shared.
		{name: "recipient_kind unknown", body: sh(strings.Replace(shared, `"recipient_kind":"service_provider"`, `"recipient_kind":"partner"`, 1)), field: "data.recipient_kind"},
		{name: "basis unknown", body: sh(strings.Replace(shared, `"basis":"service_provider"`, `"basis":"legitimate_interest"`, 1)), field: "data.basis"},
		{name: "region XA", body: sh(strings.Replace(shared, `"region":"CN"`, `"region":"XA"`, 1)), field: "data.region"},

		// privacy.data.erased.
		{name: "scope word", body: er(`{"scope":"everything","reason":"request"}`), field: "data.scope", secret: "everything"},
		{name: "scope empty", body: er(`{"scope":[],"reason":"request"}`), field: "data.scope"},
		{name: "scope unknown category", body: er(`{"scope":["usage.device","cookie.x"],"reason":"request"}`), field: "data.scope[1]"},
		{name: "scope number", body: er(`{"scope":5,"reason":"request"}`), field: "data.scope"},
		{name: "erasure reason unknown", body: er(`{"scope":"all","reason":"cleanup"}`), field: "data.reason"},
		{name: "erasure reason missing", body: er(`{"scope":"all"}`), field: "data.reason", msg: "required"},

		// privacy.notice.published.
		{name: "effective prose", body: not(`{"version":"2.0","effective":"soon"}`), field: "data.effective"},
		{name: "version missing", body: not(`{"effective":"2026-10-01T00:00:00Z"}`), field: "data.version"},
		{name: "changes too long", body: not(`{"version":"2.0","effective":"2026-10-01T00:00:00Z","changes":"` + long + `"}`), field: "data.changes"},

		// privacy.rights.*.
		{name: "right unknown", body: rq(`{"request_id":"r-1","right":"erasure"}`), field: "data.right"},
		{name: "details NUL", body: rq(`{"request_id":"r-1","right":"access","details":"secret\u0000"}`), field: "data.details", secret: "secret"},
		{name: "details invalid UTF-8", body: rq("{\"request_id\":\"r-1\",\"right\":\"access\",\"details\":\"secret\xc3\x28\"}"), field: "data.details", secret: "secret"},
		{name: "outcome unknown", body: ev(event.TypeRightsCompleted, `{"request_id":"r-1","outcome":"partial"}`), field: "data.outcome"},
		{name: "request_id too long", body: rq(`{"request_id":"` + strings.Repeat("r", 257) + `","right":"access"}`), field: "data.request_id"},
	}
}

func manyFields(n int) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"f` + string(rune('a'+i/26)) + string(rune('a'+i%26)) + `":1`)
	}
	b.WriteString("}")
	return b.String()
}

func TestBadInputs(t *testing.T) {
	for _, tc := range badInputs() {
		t.Run(tc.name, func(t *testing.T) {
			e, err := event.Decode([]byte(tc.body), now)
			if err == nil {
				t.Fatalf("accepted: %+v", e)
			}
			var fe *event.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			if !errors.Is(err, event.ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid")
			}
			if fe.Field != tc.field {
				t.Errorf("Field = %q, want %q (message %q)", fe.Field, tc.field, fe.Message)
			}
			if tc.msg != "" && !strings.Contains(fe.Message, tc.msg) {
				t.Errorf("Message = %q, want it to mention %q", fe.Message, tc.msg)
			}
			if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
				t.Errorf("error %q shows the offending value", err)
			}
		})
	}
}

// TestErrorsDoNotEchoValues feeds personal-looking values into every string
// member the schema has and checks no error shows them.
func TestErrorsDoNotEchoValues(t *testing.T) {
	const pii = "li.wei@example.cn"
	for _, tc := range badInputs() {
		_, err := event.Decode([]byte(tc.body), now)
		if err != nil && strings.Contains(err.Error(), pii) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// Every string member of every type gets a bad value that is also
	// personal data.
	bad := "\u0007" + pii + strings.Repeat("!", 5000)
	for name, b := range examples(t) {
		var doc map[string]any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		targets := []string{"id", "source", "type", "subject", "time", "datacontenttype", "traceparent", "tracestate"}
		for k := range doc["data"].(map[string]any) {
			targets = append(targets, "data."+k)
		}
		for _, target := range targets {
			mutated := cloneJSON(t, doc)
			if k, ok := strings.CutPrefix(target, "data."); ok {
				mutated["data"].(map[string]any)[k] = bad
			} else {
				mutated[target] = bad
			}
			body, _ := json.Marshal(mutated)
			_, err := event.Decode(body, now)
			if err == nil {
				t.Errorf("%s: %s accepted a bad value", name, target)
				continue
			}
			if strings.Contains(err.Error(), pii) {
				t.Errorf("%s: %s: error shows the value: %v", name, target, err)
			}
		}
	}
}

func cloneJSON(t *testing.T, v map[string]any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDuplicateKeys(t *testing.T) {
	for _, tc := range []struct{ name, body, field string }{
		{"attribute", `{"specversion":"1.0","id":"a","id":"b"}`, "id"},
		{"escaped attribute", `{"specversion":"1.0","id":"a","\u0069d":"b"}`, "id"},
		{"data", ev(event.TypeDataUsed, `{"categories":["usage.device"],"purpose":"security","purpose":"notifications"}`), "data.purpose"},
		{"fields", ev(event.TypeDataCollected, strings.Replace(collected, `{"email":"li.wei@example.cn"}`, `{"email":"a@example.cn","email":"b@example.cn"}`, 1)), "data.fields.email"},
		{"guardian", ev(event.TypeSubjectRegistered, `{"residence":"CN","age":9,"guardian":{"ref":"u-1","ref":"u-2","relation":"father"}}`), "data.guardian.ref"},
		{"unsafe name", `{"a b":1,"a b":2}`, ""},
		{"many fields", ev(event.TypeDataCollected, strings.Replace(collected, `{"email":"li.wei@example.cn"}`, strings.TrimSuffix(manyFields(20), "}")+`,"fad":2}`, 1)), "data.fields.fad"},
		{"data itself", base(event.TypeDataUsed, `{"categories":["usage.device"],"purpose":"security"}`).String()[:1] + `"data":{},` + base(event.TypeDataUsed, `{"categories":["usage.device"],"purpose":"security"}`).String()[1:], "data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := event.Decode([]byte(tc.body), now)
			var fe *event.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a FieldError", err)
			}
			if fe.Field != tc.field || !strings.Contains(fe.Message, "more than once") {
				t.Errorf("got %q %q, want field %q, a duplicate", fe.Field, fe.Message, tc.field)
			}
		})
	}
}

func nested(depth int) string {
	return strings.Repeat("[", depth) + strings.Repeat("]", depth)
}

func TestNesting(t *testing.T) {
	// The event object is depth 1 and data depth 2, so a value inside data
	// may open 30 more levels.
	within := ev(event.TypeDataUsed, `{"categories":["usage.device"],"purpose":"security","x":`+nested(event.MaxDepth-2)+`}`)
	_, err := event.Decode([]byte(within), now)
	var fe *event.FieldError
	if !errors.As(err, &fe) || fe.Field != "data.x" || fe.Message != "unknown field" {
		t.Errorf("at the limit: got %v, want data.x unknown field", err)
	}
	beyond := ev(event.TypeDataUsed, `{"categories":["usage.device"],"purpose":"security","x":`+nested(event.MaxDepth-1)+`}`)
	_, err = event.Decode([]byte(beyond), now)
	if !errors.As(err, &fe) || !strings.Contains(fe.Message, "deeper than 32") || !strings.HasPrefix(fe.Field, "data.x") {
		t.Errorf("beyond the limit: got %v", err)
	}
	// A hostile body is refused without recursing into it.
	hostile := `{"data":` + nested(1<<20) + `}`
	if _, err := event.Decode([]byte(hostile), now); !errors.Is(err, event.ErrInvalid) {
		t.Errorf("hostile nesting: %v", err)
	}
	objects := `{"data":` + strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40) + `}`
	if _, err := event.Decode([]byte(objects), now); err == nil || !strings.Contains(err.Error(), "deeper than 32") {
		t.Errorf("nested objects: %v", err)
	}
}

func TestSubjectOptionalOnlyForNotices(t *testing.T) {
	if _, err := event.Decode([]byte(ev(event.TypeNoticePublished, notice)), now); err != nil {
		t.Errorf("notice without subject: %v", err)
	}
	for _, typ := range event.Types() {
		if typ == event.TypeNoticePublished {
			continue
		}
		body := base(typ, `{}`).without("subject").String()
		_, err := event.Decode([]byte(body), now)
		var fe *event.FieldError
		if !errors.As(err, &fe) || fe.Field != "subject" {
			t.Errorf("%s without subject: %v, want a subject error", typ, err)
		}
	}
}

func TestTimes(t *testing.T) {
	for _, tc := range []struct {
		time string
		ok   bool
	}{
		{"2026-11-29T09:00:00Z", true},
		{"2026-11-29T17:00:00+08:00", true},
		{"2026-11-29T09:00:00.123456789Z", true},
		{"2026-11-30T10:00:00Z", true},  // exactly 24 h ahead
		{"2026-11-30T10:00:01Z", false}, // just beyond
		{"2026-11-29 09:00:00Z", false},
		{"2026-11-29T09:00Z", false},
		{"2026-13-01T00:00:00Z", false},
	} {
		_, err := event.Decode([]byte(base(event.TypeDataUsed, `{"categories":["usage.device"],"purpose":"security"}`).with("time", `"`+tc.time+`"`).String()), now)
		if (err == nil) != tc.ok {
			t.Errorf("time %s: err = %v, want ok=%v", tc.time, err, tc.ok)
		}
	}
}

func TestContentTypes(t *testing.T) {
	for ct, ok := range map[string]bool{
		"application/json":                 true,
		"application/json; charset=utf-8":  true,
		"application/json; charset=UTF-8":  true,
		"application/json;charset=utf-8":   true,
		"Application/JSON":                 true, // media types are case-insensitive (RFC 2045)
		"application/cloudevents+json":     false,
		"application/json; charset=utf-16": false,
		"application/json; profile=x":      false,
		"application/xml":                  false,
	} {
		_, err := event.Decode([]byte(base(event.TypeDataUsed, `{"categories":["usage.device"],"purpose":"security"}`).with("datacontenttype", `"`+ct+`"`).String()), now)
		if (err == nil) != ok {
			t.Errorf("%q: err = %v, want ok=%v", ct, err, ok)
		}
	}
}

func TestFieldErrorText(t *testing.T) {
	err := error(&event.FieldError{Field: "data.to_region", Message: "must be a region"})
	if got := err.Error(); got != "invalid event: data.to_region: must be a region" {
		t.Errorf("Error() = %q", got)
	}
	if !errors.Is(err, event.ErrInvalid) {
		t.Error("FieldError does not unwrap to ErrInvalid")
	}
}

func TestLargeContainers(t *testing.T) {
	list := func(n int) string {
		return "[" + strings.TrimSuffix(strings.Repeat(`"identity.basic",`, n), ",") + "]"
	}
	// 1000 entries parse; the list is then wrong for its content.
	_, err := event.Decode([]byte(ev(event.TypeDataUsed, `{"categories":`+list(1000)+`,"purpose":"security"}`)), now)
	var fe *event.FieldError
	if !errors.As(err, &fe) || fe.Field != "data.categories[1]" || fe.Message != "duplicate entry" {
		t.Errorf("1000 entries: %v", err)
	}
	_, err = event.Decode([]byte(ev(event.TypeDataUsed, `{"categories":`+list(1001)+`,"purpose":"security"}`)), now)
	if !errors.As(err, &fe) || fe.Field != "data.categories" || !strings.Contains(fe.Message, "more than 1000") {
		t.Errorf("1001 entries: %v", err)
	}
	var members strings.Builder
	members.WriteString(`{"a0":0`)
	for i := 1; i <= 1000; i++ {
		members.WriteString(`,"a` + strings.Repeat("b", i%7) + string(rune('0'+i%10)) + `x` + strings.Repeat("c", i/10) + `":0`)
	}
	members.WriteString("}")
	_, err = event.Decode([]byte(ev(event.TypeDataUsed, members.String())), now)
	if !errors.As(err, &fe) || fe.Field != "data" || !strings.Contains(fe.Message, "more than 1000") {
		t.Errorf("1001 members: %v", err)
	}
}

// A surrogate pair, and an escaped backslash before "ud800", are text.
func TestSurrogatePairsAccepted(t *testing.T) {
	for _, v := range []string{`2.0\ud83d\ude00`, `2.0\\ud800`} {
		data := strings.Replace(granted, `"notice_version":"2.0"`, `"notice_version":"`+v+`"`, 1)
		if _, err := event.Decode([]byte(ev(event.TypeConsentGranted, data)), now); err != nil {
			t.Errorf("%s: %v", v, err)
		}
	}
}
