package event_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"custos.dev/ledger/event"
)

func binaryHeaders() http.Header {
	h := http.Header{}
	h.Set("Ce-Specversion", "1.0")
	h.Set("Ce-Id", "evt-1")
	h.Set("Ce-Source", "https://shop.example.cn/privacy")
	h.Set("Ce-Type", event.TypeDataTransferred)
	h.Set("Ce-Subject", "user-1001")
	h.Set("Ce-Time", "2026-11-29T09:00:00Z")
	h.Set("Content-Type", "application/json")
	h.Set("Authorization", "Bearer not-an-attribute")
	h.Set("User-Agent", "shop/1.0")
	return h
}

func TestBinaryMode(t *testing.T) {
	got, err := event.DecodeBinary(binaryHeaders(), []byte(transferred), now)
	if err != nil {
		t.Fatal(err)
	}
	want, err := event.Decode([]byte(ev(event.TypeDataTransferred, transferred)), now)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("binary mode gave\n%+v\nstructured mode\n%+v", got, want)
	}
}

func TestBinaryModeAttributes(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	t.Run("percent-encoded values", func(t *testing.T) {
		h := binaryHeaders()
		h.Set("Ce-Subject", "user%2D1001%20%E6%9D%8E")
		e, err := event.DecodeBinary(h, []byte(transferred), now)
		if err != nil {
			t.Fatal(err)
		}
		if e.Subject != "user-1001 李" {
			t.Errorf("subject = %q", e.Subject)
		}
	})
	t.Run("plain traceparent", func(t *testing.T) {
		h := binaryHeaders()
		h.Set("Traceparent", tp)
		h.Set("Tracestate", "congo=t61rcWkgMzE")
		e, err := event.DecodeBinary(h, []byte(transferred), now)
		if err != nil {
			t.Fatal(err)
		}
		if e.TraceParent != tp || e.TraceState != "congo=t61rcWkgMzE" {
			t.Errorf("trace context = %q %q", e.TraceParent, e.TraceState)
		}
	})
	t.Run("ce-traceparent wins", func(t *testing.T) {
		h := binaryHeaders()
		h.Set("Ce-Traceparent", tp)
		h.Set("Traceparent", "00-11111111111111111111111111111111-2222222222222222-01")
		e, err := event.DecodeBinary(h, []byte(transferred), now)
		if err != nil {
			t.Fatal(err)
		}
		if e.TraceParent != tp {
			t.Errorf("traceparent = %q", e.TraceParent)
		}
	})
	t.Run("content type with charset", func(t *testing.T) {
		h := binaryHeaders()
		h.Set("Content-Type", "application/json; charset=utf-8")
		e, err := event.DecodeBinary(h, []byte(transferred), now)
		if err != nil {
			t.Fatal(err)
		}
		if e.DataContentType != "application/json; charset=utf-8" {
			t.Errorf("datacontenttype = %q", e.DataContentType)
		}
	})
	t.Run("lower-case header names", func(t *testing.T) {
		h := http.Header{}
		for k, v := range binaryHeaders() {
			h[strings.ToLower(k)] = v
		}
		if _, err := event.DecodeBinary(h, []byte(transferred), now); err != nil {
			t.Fatal(err)
		}
	})
}

func TestBinaryModeErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(h http.Header)
		body  string
		field string
	}{
		{"unknown ce header", func(h http.Header) { h.Set("Ce-Partitionkey", "p") }, transferred, "partitionkey"},
		{"ce-dataschema", func(h http.Header) { h.Set("Ce-Dataschema", "https://x.example") }, transferred, "dataschema"},
		{"ce-datacontenttype", func(h http.Header) { h.Set("Ce-Datacontenttype", "application/json") }, transferred, "datacontenttype"},
		{"unsafe ce header name", func(h http.Header) { h["ce-li.wei@example.cn"] = []string{"x"} }, transferred, ""},
		{"no content type", func(h http.Header) { h.Del("Content-Type") }, transferred, "datacontenttype"},
		{"structured content type", func(h http.Header) { h.Set("Content-Type", "application/cloudevents+json") }, transferred, "datacontenttype"},
		{"no specversion", func(h http.Header) { h.Del("Ce-Specversion") }, transferred, "specversion"},
		{"wrong specversion", func(h http.Header) { h.Set("Ce-Specversion", "0.3") }, transferred, "specversion"},
		{"custos type", func(h http.Header) { h.Set("Ce-Type", "custos.policy.activated") }, transferred, "type"},
		{"no subject", func(h http.Header) { h.Del("Ce-Subject") }, transferred, "subject"},
		{"bad percent-encoding", func(h http.Header) { h.Set("Ce-Subject", "user%G1") }, transferred, "subject"},
		{"percent-encoded invalid UTF-8", func(h http.Header) { h.Set("Ce-Subject", "user%FF") }, transferred, "subject"},
		{"percent-encoded control", func(h http.Header) { h.Set("Ce-Subject", "user%07") }, transferred, "subject"},
		{"two ids", func(h http.Header) { h.Add("Ce-Id", "evt-2") }, transferred, "id"},
		{"id twice by case", func(h http.Header) { h["ce-id"] = []string{"evt-2"} }, transferred, "id"},
		{"future time", func(h http.Header) { h.Set("Ce-Time", "2027-01-01T00:00:00Z") }, transferred, "time"},
		{"empty body", func(http.Header) {}, "", "data"},
		{"body not an object", func(http.Header) {}, `["CN"]`, "data"},
		{"body malformed", func(http.Header) {}, `{"transfer_id":`, "data.transfer_id"},
		{"body trailing data", func(http.Header) {}, transferred + `x`, ""},
		{"bad region in body", func(http.Header) {}, strings.Replace(transferred, `"SG"`, `"ZZ"`, 1), "data.to_region"},
		{"duplicate in body", func(http.Header) {}, strings.Replace(transferred, `{`, `{"purpose":"security",`, 1), "data.purpose"},
		{"deep body", func(http.Header) {}, `{"x":` + nested(31) + `}`, "data.x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := binaryHeaders()
			tc.edit(h)
			_, err := event.DecodeBinary(h, []byte(tc.body), now)
			var fe *event.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a FieldError", err)
			}
			if fe.Field != tc.field && !strings.HasPrefix(fe.Field, tc.field+"[") {
				t.Errorf("Field = %q (%s), want %q", fe.Field, fe.Message, tc.field)
			}
			if strings.Contains(err.Error(), "li.wei") {
				t.Errorf("error shows a value: %v", err)
			}
		})
	}
}

func TestDecodeBatch(t *testing.T) {
	var entries []string
	for _, b := range examples(t) {
		entries = append(entries, string(b))
	}
	raws, err := event.DecodeBatch([]byte("[" + strings.Join(entries, ",") + "]"))
	if err != nil {
		t.Fatal(err)
	}
	if len(raws) != len(entries) {
		t.Fatalf("%d entries, want %d", len(raws), len(entries))
	}
	for i, raw := range raws {
		if _, err := event.Decode(raw, now); err != nil {
			t.Errorf("entry %d: %v", i, err)
		}
	}

	// A bad entry is the caller's to report; the batch still splits.
	raws, err = event.DecodeBatch([]byte(`[{"specversion":"0.3"}, 42, ` + entries[0] + `]`))
	if err != nil || len(raws) != 3 {
		t.Fatalf("mixed batch: %d entries, %v", len(raws), err)
	}
	if _, err := event.Decode(raws[1], now); !errors.Is(err, event.ErrInvalid) {
		t.Errorf("entry 42 decoded: %v", err)
	}

	full := "[" + strings.TrimSuffix(strings.Repeat("{},", event.MaxBatch), ",") + "]"
	if raws, err := event.DecodeBatch([]byte(full)); err != nil || len(raws) != event.MaxBatch {
		t.Errorf("batch of %d: %d entries, %v", event.MaxBatch, len(raws), err)
	}

	for _, tc := range []struct{ name, body, field string }{
		{"empty", `[]`, ""},
		{"object", `{"specversion":"1.0"}`, ""},
		{"nothing", ``, ""},
		{"too many", "[" + strings.Repeat("{},", event.MaxBatch) + "{}]", fmt.Sprintf("[%d]", event.MaxBatch)},
		{"malformed entry", `[{}, {"a":]`, "[1]"},
		{"unterminated", `[{}`, ""},
		{"trailing data", `[{}] []`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := event.DecodeBatch([]byte(tc.body))
			var fe *event.FieldError
			if !errors.As(err, &fe) || !errors.Is(err, event.ErrInvalid) {
				t.Fatalf("err = %v, want a FieldError", err)
			}
			if fe.Field != tc.field {
				t.Errorf("Field = %q (%s), want %q", fe.Field, fe.Message, tc.field)
			}
		})
	}
}

func TestScopeJSON(t *testing.T) {
	for _, tc := range []struct {
		json  string
		scope event.Scope
	}{
		{`"all"`, event.Scope{All: true}},
		{`["usage.device","cookie.analytics"]`, event.Scope{Categories: []string{"usage.device", "cookie.analytics"}}},
	} {
		var s event.Scope
		if err := json.Unmarshal([]byte(tc.json), &s); err != nil || !reflect.DeepEqual(s, tc.scope) {
			t.Errorf("Unmarshal(%s) = %+v, %v", tc.json, s, err)
		}
		b, err := json.Marshal(tc.scope)
		if err != nil || string(b) != tc.json {
			t.Errorf("Marshal(%+v) = %s, %v", tc.scope, b, err)
		}
	}
	for _, bad := range []string{`"everything"`, `5`, `null`, `{"all":true}`, `[1]`} {
		var s event.Scope
		if err := json.Unmarshal([]byte(bad), &s); err == nil {
			t.Errorf("Unmarshal(%s) accepted: %+v", bad, s)
		}
	}
	if _, err := json.Marshal(event.Scope{All: true, Categories: []string{"usage.device"}}); err == nil {
		t.Error("a scope that is both all and a list marshalled")
	}
}
