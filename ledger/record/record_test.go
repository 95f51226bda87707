package record_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"custos.dev/ledger/decision"
	"custos.dev/ledger/record"
)

func mustJSON(t testing.TB, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// records are records of the shapes Custos writes: an allowed event with a
// decision and sealed values, and each internal type.
func records(t testing.TB) []*record.Record {
	at := record.FormatTime(time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC))
	dec := &decision.Decision{Allow: true, Reasons: []decision.Reason{}, Obligations: []any{}, PolicyRevision: "sha256:ab"}
	deny := decision.Decision{Allow: false, Reasons: []decision.Reason{{Code: "NO_SEPARATE_CONSENT", Message: "needs <separate> consent & more"}}, Obligations: []any{}, PolicyRevision: "sha256:ab"}
	return []*record.Record{
		{Type: "privacy.data.collected", ID: "evt-1", Source: "/crm", Time: at, Subject: "abcdefghijklmnopqrstuvwxyz", RecordedAt: at,
			Data:       json.RawMessage(`{"categories":["contact"],"fields":{"email":"hmac-sha256:AAAA"},"purpose":"service","retention":"P1Y","storage_region":"CN"}`),
			PII:        "abcdefghijklmnopqrstuvwxyz.k1",
			ContentMAC: "mac", Decision: dec, TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", TraceState: "a=b"},
		{Type: "privacy.notice.published", ID: "n-2", Source: "/legal", Time: at, RecordedAt: at,
			Data: json.RawMessage(`{"effective":"2026-03-01T00:00:00Z","version":"v2"}`), Decision: dec},
		{Type: record.TypeDenied, ID: "denied-x-3", Source: "custos", Time: at, Subject: "p", RecordedAt: at,
			Data: mustJSON(t, record.Denied{Digest: "sha256:x", Type: "privacy.data.transferred", Source: "/s", ID: "t1",
				Attempted: json.RawMessage(`{"to_region":"US"}`), Decision: deny})},
		{Type: record.TypePolicyActivated, ID: "pol-1", Source: "custos", Time: at, RecordedAt: at,
			Data: mustJSON(t, record.PolicyActivated{Revision: "sha256:ab", By: "operator", Previous: "sha256:aa"})},
		{Type: record.TypeKeyDestroyed, ID: "kd-1", Source: "custos", Time: at, Subject: "p", RecordedAt: at,
			Data: mustJSON(t, record.KeyDestroyed{Reason: "request", RequestID: "r1", KeyName: "custos-subject-p", Trigger: 7})},
		{Type: record.TypeRetentionExpired, ID: "re-1", Source: "custos", Time: at, Subject: "p", RecordedAt: at,
			Data: mustJSON(t, record.RetentionExpired{Categories: []string{"contact"}, Collected: []uint64{3, 9}, Deadline: at})},
	}
}

func TestMarshalUnmarshalRoundTrip(t *testing.T) {
	for _, r := range records(t) {
		t.Run(r.Type, func(t *testing.T) {
			body, err := record.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if r.V != record.Version {
				t.Fatalf("Marshal left V = %d", r.V)
			}
			if bytes.HasSuffix(body, []byte("\n")) || bytes.Contains(body, []byte("\n")) {
				t.Fatalf("body is not one line without newline: %q", body)
			}
			got, err := record.Unmarshal(body)
			if err != nil {
				t.Fatalf("Unmarshal(Marshal(r)): %v", err)
			}
			if !reflect.DeepEqual(got, r) {
				t.Fatalf("round trip changed the record:\n got %+v\nwant %+v", got, r)
			}
			again, err := record.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, body) {
				t.Fatalf("re-marshal differs:\n%s\n%s", again, body)
			}
			if !got.EventTime().Equal(time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)) {
				t.Fatalf("EventTime = %v", got.EventTime())
			}
		})
	}
}

// The body is what gets hashed, so its spelling is fixed: declaration order,
// no HTML escaping, empty optional fields left out.
func TestMarshalSpelling(t *testing.T) {
	r := &record.Record{Type: "t", ID: "i", Source: "s", Time: "2026-01-01T00:00:00Z", RecordedAt: "2026-01-01T00:00:01Z",
		Data: json.RawMessage(`{ "b" : "<&>" ,"a":1 }`)}
	body, err := record.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"v":1,"type":"t","id":"i","source":"s","time":"2026-01-01T00:00:00Z","recorded_at":"2026-01-01T00:00:01Z","data":{"b":"<&>","a":1}}`
	if string(body) != want {
		t.Fatalf("body\n got %s\nwant %s", body, want)
	}
}

func TestUnmarshalRefuses(t *testing.T) {
	good := `{"v":1,"type":"t","id":"i","source":"s","time":"2026-01-01T00:00:00Z","recorded_at":"2026-01-01T00:00:00Z","data":{}}`
	if _, err := record.Unmarshal([]byte(good)); err != nil {
		t.Fatalf("baseline refused: %v", err)
	}
	for name, body := range map[string]string{
		"empty":           ``,
		"not json":        `v=1`,
		"array":           `[` + good + `]`,
		"trailing object": good + good,
		"trailing junk":   good + ` x`,
		"unknown field":   strings.Replace(good, `"v":1`, `"v":1,"email":"a@b"`, 1),
		"version 0":       strings.Replace(good, `"v":1`, `"v":0`, 1),
		"version 2":       strings.Replace(good, `"v":1`, `"v":2`, 1),
		"no version":      strings.Replace(good, `"v":1,`, ``, 1),
		"no type":         strings.Replace(good, `"type":"t",`, ``, 1),
		"no id":           strings.Replace(good, `"id":"i",`, ``, 1),
		"no source":       strings.Replace(good, `"source":"s",`, ``, 1),
		"empty type":      strings.Replace(good, `"type":"t"`, `"type":""`, 1),
		"bad time":        strings.Replace(good, `2026-01-01T00:00:00Z","recorded`, `yesterday","recorded`, 1),
		"no data":         strings.Replace(good, `,"data":{}`, ``, 1),
		"null data":       strings.Replace(good, `"data":{}`, `"data":null`, 1),
		"array data":      strings.Replace(good, `"data":{}`, `"data":[]`, 1),
		"string data":     strings.Replace(good, `"data":{}`, `"data":"{}"`, 1),
		"wrong type":      strings.Replace(good, `"v":1`, `"v":"1"`, 1),
	} {
		if _, err := record.Unmarshal([]byte(body)); !errors.Is(err, record.ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func TestDecodeData(t *testing.T) {
	r := &record.Record{Type: record.TypeKeyDestroyed, Data: json.RawMessage(`{"reason":"request","key_name":"k","trigger_seq":4}`)}
	var d record.KeyDestroyed
	if err := r.DecodeData(&d); err != nil || d.Trigger != 4 || d.KeyName != "k" {
		t.Fatalf("DecodeData = %+v, %v", d, err)
	}
	r.Data = json.RawMessage(`{"trigger_seq":"four"}`)
	if err := r.DecodeData(&d); !errors.Is(err, record.ErrMalformed) {
		t.Fatalf("err = %v, want ErrMalformed", err)
	}
}

// BenchmarkUnmarshal is the follower's cost per record on replay and on
// every append.
func BenchmarkUnmarshal(b *testing.B) {
	for _, r := range records(b) {
		body, err := record.Marshal(r)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(r.Type, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := record.Unmarshal(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
