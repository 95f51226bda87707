package pii

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"custos.dev/ledger/event"
)

// Personal values used below; none may appear where the tests look.
const (
	email       = "alice.wang@example.cn"
	phone       = "+86 138 0013 8000"
	birthDate   = "2008-05-01"
	guardianRef = "guardian-zhang-wei-110101197001011234"
	details     = "please send me everything about order 77731"
	reason      = "identity could not be confirmed for alice"
	newEmail    = "a.wang@corp.example.cn"
)

var personalValues = []string{email, phone, birthDate, guardianRef, details, reason, newEmail}

func testKey(t testing.TB, seed byte) *SubjectKey {
	t.Helper()
	k, err := newSubjectKey(bytes.Repeat([]byte{seed}, 32), time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func raw(v string) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

var at = time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)

type splitCase struct {
	name     string
	event    *event.Event
	personal Values
	data     string // the clear data, as JSON
	policy   string // PolicyData, as JSON
}

func splitCases() []splitCase {
	ev := func(typ string, data any) *event.Event {
		return &event.Event{SpecVersion: "1.0", ID: "e1", Source: "/svc", Type: typ, Subject: "user-1", Time: at, Data: data}
	}
	return []splitCase{
		{
			name: "registered with birth date and guardian",
			event: ev(event.TypeSubjectRegistered, &event.SubjectRegistered{Residence: "CN", BirthDate: birthDate,
				Guardian: &event.Guardian{Ref: guardianRef, Relation: "parent"}}),
			personal: Values{"birth_date": raw(birthDate), "guardian.ref": raw(guardianRef)},
			// Born 2008-05-01, registered on 2026-05-01: 18 on the day.
			data:   `{"age":18,"guardian":{"relation":"parent"},"residence":"CN"}`,
			policy: `{"age":18,"guardian":true,"residence":"CN"}`,
		},
		{
			name:     "registered the day before the birthday",
			event:    &event.Event{Type: event.TypeSubjectRegistered, Time: at.Add(-time.Second), Data: &event.SubjectRegistered{Residence: "CN", BirthDate: birthDate}},
			personal: Values{"birth_date": raw(birthDate)},
			data:     `{"age":17,"residence":"CN"}`,
			policy:   `{"age":17,"residence":"CN"}`,
		},
		{
			name:     "registered with an age only",
			event:    ev(event.TypeSubjectRegistered, &event.SubjectRegistered{Residence: "CN", Age: func() *int { n := 40; return &n }()}),
			personal: Values{},
			data:     `{"age":40,"residence":"CN"}`,
			policy:   `{"age":40,"residence":"CN"}`,
		},
		{
			name: "consent with guardian",
			event: ev(event.TypeConsentGranted, &event.ConsentGranted{ConsentID: "c1", NoticeVersion: "v1", Purposes: []string{"marketing"},
				Categories: []string{"contact"}, Guardian: &event.Guardian{Ref: guardianRef, Relation: "parent"}}),
			personal: Values{"guardian.ref": raw(guardianRef)},
			data:     `{"categories":["contact"],"consent_id":"c1","guardian":{"relation":"parent"},"notice_version":"v1","purposes":["marketing"]}`,
			policy:   `{"categories":["contact"],"consent_id":"c1","guardian":true,"notice_version":"v1","purposes":["marketing"]}`,
		},
		{
			name: "collected fields",
			event: ev(event.TypeDataCollected, &event.DataCollected{Categories: []string{"contact"}, Purpose: "service", StorageRegion: "CN", Retention: "P1Y",
				Fields: map[string]json.RawMessage{"email": raw(email), "phone": raw(phone), "vip": json.RawMessage(`true`)}}),
			personal: Values{"fields.email": raw(email), "fields.phone": raw(phone), "fields.vip": json.RawMessage(`true`)},
			data:     `{"categories":["contact"],"purpose":"service","retention":"P1Y","storage_region":"CN"}`,
			policy:   `{"categories":["contact"],"fields":["email","phone","vip"],"purpose":"service","retention":"P1Y","storage_region":"CN"}`,
		},
		{
			name:     "corrected fields",
			event:    ev(event.TypeDataCorrected, &event.DataCorrected{Categories: []string{"contact"}, Fields: map[string]json.RawMessage{"email": raw(newEmail)}}),
			personal: Values{"fields.email": raw(newEmail)},
			data:     `{"categories":["contact"]}`,
			policy:   `{"categories":["contact"],"fields":["email"]}`,
		},
		{
			name:     "rights request details",
			event:    ev(event.TypeRightsRequested, &event.RightsRequested{RequestID: "r1", Right: "access", Details: details}),
			personal: Values{"details": raw(details)},
			data:     `{"request_id":"r1","right":"access"}`,
			policy:   `{"request_id":"r1","right":"access"}`,
		},
		{
			name:     "rights completion reason",
			event:    ev(event.TypeRightsCompleted, &event.RightsCompleted{RequestID: "r1", Outcome: "rejected", Reason: reason}),
			personal: Values{"reason": raw(reason)},
			data:     `{"outcome":"rejected","request_id":"r1"}`,
			policy:   `{"outcome":"rejected","request_id":"r1"}`,
		},
		{
			name: "transfer (nothing personal)",
			event: ev(event.TypeDataTransferred, &event.DataTransferred{TransferID: "t1", Recipient: "acme", FromRegion: "CN", ToRegion: "US",
				Categories: []string{"contact"}, Purpose: "marketing"}),
			personal: Values{},
			data:     `{"categories":["contact"],"from_region":"CN","purpose":"marketing","recipient":"acme","to_region":"US","transfer_id":"t1"}`,
			policy:   `{"categories":["contact"],"from_region":"CN","purpose":"marketing","recipient":"acme","to_region":"US","transfer_id":"t1"}`,
		},
		{
			name:     "erasure (its reason is a code, not free text)",
			event:    ev(event.TypeDataErased, &event.DataErased{Scope: event.Scope{All: true}, Reason: "request"}),
			personal: Values{},
			data:     `{"reason":"request","scope":"all"}`,
			policy:   `{"reason":"request","scope":"all"}`,
		},
	}
}

func jsonOf(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSplit(t *testing.T) {
	for _, tc := range splitCases() {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Split(tc.event)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p.Personal, tc.personal) {
				t.Fatalf("personal values\n got %s\nwant %s", jsonOf(t, p.Personal), jsonOf(t, tc.personal))
			}
			if got := jsonOf(t, p.Data); got != tc.data {
				t.Fatalf("clear data\n got %s\nwant %s", got, tc.data)
			}
			pd := jsonOf(t, p.PolicyData())
			if pd != tc.policy {
				t.Fatalf("policy data\n got %s\nwant %s", pd, tc.policy)
			}
			for _, v := range personalValues {
				if strings.Contains(pd, v) || strings.Contains(jsonOf(t, p.Data), v) {
					t.Fatalf("personal value %q in the clear data or policy data: %s", v, pd)
				}
			}
		})
	}
}

func TestCommitted(t *testing.T) {
	k, other := testKey(t, 1), testKey(t, 2)
	for _, tc := range splitCases() {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Split(tc.event)
			if err != nil {
				t.Fatal(err)
			}
			before := jsonOf(t, p.Data)
			c := p.Committed(k)
			out := jsonOf(t, c)
			if jsonOf(t, p.Data) != before {
				t.Fatalf("Committed changed the parts' data: %s, was %s", jsonOf(t, p.Data), before)
			}
			for _, v := range personalValues {
				if strings.Contains(out, v) {
					t.Fatalf("personal value %q in the record data %s", v, out)
				}
			}
			if n := strings.Count(out, "hmac-sha256:"); n != len(tc.personal) {
				t.Fatalf("%d commitments for %d values: %s", n, len(tc.personal), out)
			}
			// Each value's commitment sits where the value was.
			for path, v := range tc.personal {
				want := k.Commit(path, v)
				var got any
				switch {
				case strings.Contains(path, "."):
					obj, member, _ := strings.Cut(path, ".")
					got = c[obj].(map[string]any)[member]
				default:
					got = c[path]
				}
				if got != want {
					t.Fatalf("%s: commitment %v, want %s", path, got, want)
				}
				if other.Commit(path, v) == want {
					t.Fatalf("%s: another subject's key gives the same commitment", path)
				}
			}
			if g, ok := c["guardian"].(map[string]any); ok && g["relation"] != "parent" {
				t.Fatalf("guardian %v", g)
			}
		})
	}
}

func TestCommit(t *testing.T) {
	k := testKey(t, 1)
	a := k.Commit("fields.email", raw(email))
	if a != testKey(t, 1).Commit("fields.email", raw(email)) {
		t.Fatal("commitments are not deterministic")
	}
	if a == k.Commit("fields.backup_email", raw(email)) {
		t.Fatal("the same value under two paths commits the same")
	}
	if a == k.Commit("fields.email", raw(newEmail)) {
		t.Fatal("two values commit the same")
	}
	// The path and value are separated, so moving a byte between them
	// changes the commitment.
	if k.Commit("ab", []byte("c")) == k.Commit("a", []byte("bc")) {
		t.Fatal("path/value boundary is ambiguous")
	}
}

func TestSealOpen(t *testing.T) {
	k := testKey(t, 7)
	v := Values{"fields.email": raw(email), "subject": raw("user-1")}
	sealed, err := k.Seal("p.e1", v)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte(email)) || bytes.Contains(sealed, []byte("user-1")) {
		t.Fatal("sealed bytes hold a value in clear")
	}
	again, err := k.Seal("p.e1", v)
	if err != nil || bytes.Equal(again, sealed) {
		t.Fatalf("two seals of the same values are identical (nonce reuse?): %v", err)
	}
	got, err := testKey(t, 7).Open("p.e1", sealed)
	if err != nil || !reflect.DeepEqual(got, v) {
		t.Fatalf("Open = %v, %v", got, err)
	}
	if _, err := k.Open("p.e2", sealed); err == nil {
		t.Fatal("opened under another ref")
	}
	if _, err := testKey(t, 8).Open("p.e1", sealed); err == nil {
		t.Fatal("opened with another subject's key")
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	if _, err := k.Open("p.e1", tampered); err == nil {
		t.Fatal("opened tampered ciphertext")
	}
	for _, short := range [][]byte{nil, sealed[:5], sealed[:12]} {
		if _, err := k.Open("p.e1", short); err == nil {
			t.Fatalf("opened %d bytes", len(short))
		}
	}
	// Errors never quote the values.
	if _, err := k.Open("p.e2", sealed); strings.Contains(err.Error(), email) {
		t.Fatalf("error %q quotes a value", err)
	}
}

func TestAgeAt(t *testing.T) {
	bd := func(s string) time.Time {
		d, err := time.Parse("2006-01-02", s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for _, tc := range []struct {
		birth string
		at    time.Time
		want  int
	}{
		{"2008-05-01", time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), 18}, // birthday exactly on the day
		{"2008-05-01", time.Date(2026, 4, 30, 23, 59, 59, 0, time.UTC), 17},
		{"2008-05-01", time.Date(2026, 5, 1, 7, 0, 0, 0, time.FixedZone("UTC+8", 8*3600)), 17}, // still April 30th in UTC
		{"2008-02-29", time.Date(2026, 2, 28, 12, 0, 0, 0, time.UTC), 17},
		{"2008-02-29", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), 18},
		{"2008-02-29", time.Date(2028, 2, 29, 0, 0, 0, 0, time.UTC), 20},
		{"2030-01-01", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 0}, // born in the future
	} {
		if got := AgeAt(bd(tc.birth), tc.at); got != tc.want {
			t.Errorf("AgeAt(%s, %v) = %d, want %d", tc.birth, tc.at, got, tc.want)
		}
	}
}

func TestPseudonymizer(t *testing.T) {
	p := NewPseudonymizer(bytes.Repeat([]byte{1}, 32))
	a := p.Pseudonym("user-1")
	if a != NewPseudonymizer(bytes.Repeat([]byte{1}, 32)).Pseudonym("user-1") {
		t.Fatal("pseudonyms are not stable")
	}
	if len(a) != 26 || strings.Trim(a, "abcdefghijklmnopqrstuvwxyz234567") != "" {
		t.Fatalf("pseudonym %q is not 26 lower-case base32 characters", a)
	}
	if a == p.Pseudonym("user-2") || a == NewPseudonymizer(bytes.Repeat([]byte{2}, 32)).Pseudonym("user-1") {
		t.Fatal("pseudonyms collide across subjects or keys")
	}
	if strings.Contains(SubjectKeyName(a), "user-1") || !slices.Contains([]string{"custos-subject-" + a}, SubjectKeyName(a)) {
		t.Fatalf("key name %q", SubjectKeyName(a))
	}
	if p.MAC("content", []byte("x")) == p.MAC("other", []byte("x")) || p.MAC("a", []byte("bc")) == p.MAC("ab", []byte("c")) {
		t.Fatal("MAC labels do not separate domains")
	}
}

// A trace state is opaque vendor text: on an event about a data subject it
// is sealed with their values; on one about nobody it stays in clear.
func TestSplitSealsTraceState(t *testing.T) {
	e := &event.Event{SpecVersion: "1.0", ID: "e1", Source: "/svc", Type: event.TypeDataUsed, Subject: "user-1", Time: at,
		TraceState: "vendor=user-li.wei", Data: &event.DataUsed{Categories: []string{"identity.contact"}, Purpose: "security"}}
	p, err := Split(e)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(p.Personal["tracestate"]); got != `"vendor=user-li.wei"` {
		t.Errorf("sealed trace state = %s", got)
	}
	if c := jsonOf(t, p.Committed(testKey(t, 1))); strings.Contains(c, "tracestate") || strings.Contains(c, "li.wei") {
		t.Errorf("the committed data names the trace state: %s", c)
	}
	e.Subject, e.Type, e.Data = "", event.TypeNoticePublished, &event.NoticePublished{Version: "1", Effective: at}
	if p, err = Split(e); err != nil || len(p.Personal) != 0 {
		t.Errorf("a notice's trace state was sealed: %v %v", p.Personal, err)
	}
}

// Every member PersonalMembers names is taken out of the clear data.
func TestPersonalMembersAreTheOnlyOnesSealed(t *testing.T) {
	for _, tc := range splitCases() {
		want := map[string]bool{}
		for _, path := range event.PersonalMembers(tc.event.Type) {
			want[path] = true
		}
		for k := range tc.personal {
			prefix, _, _ := strings.Cut(k, ".")
			if !want[k] && !want[prefix+".*"] {
				t.Errorf("%s: sealed %s, which the event model does not call personal", tc.name, k)
			}
		}
	}
}

// What the policy saw is rebuilt exactly from the stored record data.
func TestStoredPolicyDataIsPolicyData(t *testing.T) {
	k := testKey(t, 3)
	for _, tc := range splitCases() {
		p, err := Split(tc.event)
		if err != nil {
			t.Fatal(err)
		}
		stored := map[string]any{}
		if err := json.Unmarshal([]byte(jsonOf(t, p.Committed(k))), &stored); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{}
		_ = json.Unmarshal([]byte(jsonOf(t, p.PolicyData())), &want)
		if got := jsonOf(t, StoredPolicyData(tc.event.Type, stored)); got != jsonOf(t, want) {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, jsonOf(t, want))
		}
	}
}

// DataFromPolicyData gives back the members of the stored data, but for the
// personal values themselves.
func TestDataFromPolicyData(t *testing.T) {
	k := testKey(t, 4)
	for _, tc := range splitCases() {
		p, err := Split(tc.event)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]any{}
		_ = json.Unmarshal([]byte(jsonOf(t, p.PolicyData())), &seen)
		back := DataFromPolicyData(tc.event.Type, seen)
		for key := range p.Committed(k) {
			if _, ok := back[key]; !ok && !slices.Contains(event.PersonalMembers(tc.event.Type), key) {
				t.Errorf("%s: %s is lost", tc.name, key)
			}
		}
		if f, ok := back["fields"]; ok {
			if _, isObject := f.(map[string]any); !isObject {
				t.Errorf("%s: fields is %T, want an object", tc.name, f)
			}
		}
	}
}
