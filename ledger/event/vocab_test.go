package event_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"custos.dev/ledger/event"
)

func TestDurations(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want event.Duration
		str  string
	}{
		{"P1Y2M3DT4H5M6S", event.Duration{Years: 1, Months: 2, Days: 3, Hours: 4, Minutes: 5, Seconds: 6}, "P1Y2M3DT4H5M6S"},
		{"P2W", event.Duration{Weeks: 2}, "P2W"},
		{"P30D", event.Duration{Days: 30}, "P30D"},
		{"P1Y", event.Duration{Years: 1}, "P1Y"},
		{"P1M", event.Duration{Months: 1}, "P1M"},
		{"PT1M", event.Duration{Minutes: 1}, "PT1M"},
		{"PT36H", event.Duration{Hours: 36}, "PT36H"},
		{"PT0.5S", event.Duration{Seconds: 0.5}, "PT0.5S"},
		{"PT1,25S", event.Duration{Seconds: 1.25}, "PT1.25S"},
		{"P0D", event.Duration{}, "P0D"},
		{"PT0S", event.Duration{}, "P0D"},
		{"P01D", event.Duration{Days: 1}, "P1D"},
		{"P1DT12H", event.Duration{Days: 1, Hours: 12}, "P1DT12H"},
		{"P999999999Y", event.Duration{Years: 999999999}, "P999999999Y"},
	} {
		d, err := event.ParseDuration(tc.in)
		if err != nil {
			t.Errorf("ParseDuration(%q): %v", tc.in, err)
			continue
		}
		if d != tc.want {
			t.Errorf("ParseDuration(%q) = %+v, want %+v", tc.in, d, tc.want)
		}
		if d.String() != tc.str {
			t.Errorf("%q.String() = %q, want %q", tc.in, d.String(), tc.str)
		}
	}
	for _, bad := range []string{
		"", "P", "PT", "P1DT", "T1H", "1D", "-P1D", "P-1D", "+P1D", "p1d", "P1d", "P1D ", " P1D",
		"P1.5D", "PT1.S", "PT.5S", "P1H", "PT1D", "P1D1Y", "P1Y1Y", "P1W1D", "P1WT1H", "PT1H1H",
		"P1YT", "P1234567890D", "PT1.1234567890123456789S", "PT999999999.9999999999S",
		"P1Y2M3DT4H5M6S7", "PXD", "P1DT1HT1M", "P" + strings.Repeat("1", 100) + "D",
	} {
		if d, err := event.ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted: %+v", bad, d)
		} else if !errors.Is(err, event.ErrDuration) {
			t.Errorf("ParseDuration(%q): %v does not wrap ErrDuration", bad, err)
		} else if len(bad) > 3 && strings.Contains(err.Error(), bad) {
			t.Errorf("ParseDuration(%q): error shows the input: %v", bad, err)
		}
	}
}

func TestDurationAddTo(t *testing.T) {
	base := time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		d    string
		want time.Time
	}{
		{"P1Y", time.Date(2027, 1, 31, 10, 0, 0, 0, time.UTC)},
		{"P1M", time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC)}, // AddDate normalises 31 Feb
		{"P2W", time.Date(2026, 2, 14, 10, 0, 0, 0, time.UTC)},
		{"P1DT12H", time.Date(2026, 2, 1, 22, 0, 0, 0, time.UTC)},
		{"PT0.25S", base.Add(250 * time.Millisecond)},
		{"PT999999999H", time.Unix(base.Unix()+999999999*3600, 0).UTC()}, // beyond time.Duration
	} {
		d, err := event.ParseDuration(tc.d)
		if err != nil {
			t.Fatal(err)
		}
		if got := d.AddTo(base); !got.Equal(tc.want) {
			t.Errorf("%s.AddTo = %v, want %v", tc.d, got, tc.want)
		}
	}
	sh := time.FixedZone("CST", 8*3600)
	if got := (event.Duration{Days: 1}).AddTo(time.Date(2026, 1, 1, 0, 0, 0, 0, sh)); got.Location() != sh || got.Day() != 2 {
		t.Errorf("AddTo lost the location: %v", got)
	}
}

func TestRegions(t *testing.T) {
	for _, r := range []string{"CN", "HK", "MO", "TW", "SG", "DE", "US", "JP", "GB", "ZW", "AD"} {
		if !event.ValidRegion(r) {
			t.Errorf("%s rejected", r)
		}
	}
	for _, r := range []string{"ZZ", "XK", "EU", "UK", "UN", "AA", "QM", "QZ", "XA", "XZ", "cn", "Cn", "C1", "CHN", "C", "", "D E", "N ", " CN", "DD", "YU", "AN"} {
		if event.ValidRegion(r) {
			t.Errorf("%q accepted", r)
		}
	}
	regions := event.Regions()
	if len(regions) != 249 || !slices.IsSorted(regions) {
		t.Errorf("Regions(): %d codes, sorted %v", len(regions), slices.IsSorted(regions))
	}
	for _, r := range regions {
		if !event.ValidRegion(r) {
			t.Errorf("Regions() lists %s, which ValidRegion rejects", r)
		}
	}
}

func TestVocabulary(t *testing.T) {
	for _, v := range []struct {
		name string
		list []string
		is   func(string) bool
		n    int
	}{
		{"categories", event.Categories(), event.IsCategory, 12},
		{"cookie classes", event.CookieClasses(), event.IsCookieClass, 4},
		{"purposes", event.Purposes(), event.IsPurpose, 7},
		{"recipient kinds", event.RecipientKinds(), event.IsRecipientKind, 4},
		{"bases", event.Bases(), event.IsBasis, 4},
		{"mechanisms", event.Mechanisms(), event.IsMechanism, 5},
		{"rights", event.Rights(), event.IsRight, 6},
		{"outcomes", event.Outcomes(), event.IsOutcome, 2},
		{"erasure reasons", event.ErasureReasons(), event.IsErasureReason, 3},
		{"types", event.Types(), event.IsType, 12},
	} {
		if len(v.list) != v.n || !slices.IsSorted(v.list) || len(slices.Compact(slices.Clone(v.list))) != v.n {
			t.Errorf("%s: %v, want %d sorted distinct terms", v.name, v.list, v.n)
		}
		for _, s := range v.list {
			if !v.is(s) || v.is(strings.ToUpper(s)) || v.is(s+" ") {
				t.Errorf("%s: predicate wrong around %q", v.name, s)
			}
		}
		v.list[0] = "changed" // callers get their own copy
	}
	if event.Categories()[0] == "changed" {
		t.Error("Categories() shares its slice")
	}
	for _, c := range event.CookieClasses() {
		if !strings.HasPrefix(c, "cookie.") || !event.IsCategory(c) {
			t.Errorf("cookie class %s", c)
		}
	}
	if event.IsCookieClass("usage.device") {
		t.Error("usage.device is not a cookie class")
	}
	for _, typ := range event.Types() {
		if !strings.HasPrefix(typ, "privacy.") || event.IsInternalType(typ) {
			t.Errorf("type %s", typ)
		}
	}
	for _, typ := range []string{"custos.decision.denied", "custos.policy.activated", "custos.key.destroyed", "custos.retention.expired"} {
		if !event.IsInternalType(typ) || event.IsType(typ) {
			t.Errorf("internal type %s", typ)
		}
	}
}

// validEvent builds in code what 07-privacy.data.transferred.json holds.
func validEvent() *event.Event {
	return &event.Event{
		SpecVersion: "1.0", ID: "evt-1", Source: "https://shop.example.cn/privacy",
		Type: event.TypeDataTransferred, Subject: "user-1001",
		Time: now.Add(-time.Hour), DataContentType: "application/json",
		Data: &event.DataTransferred{
			TransferID: "tr-1", Recipient: "acme-sg", FromRegion: "CN", ToRegion: "SG",
			Categories: []string{"identity.contact"}, Purpose: "customer_support", Mechanism: "standard_contract",
		},
	}
}

func TestValidate(t *testing.T) {
	if err := validEvent().Validate(now); err != nil {
		t.Fatalf("valid event: %v", err)
	}
	for _, tc := range []struct {
		name  string
		edit  func(e *event.Event)
		field string
	}{
		{"zero time", func(e *event.Event) { e.Time = time.Time{} }, "time"},
		{"no specversion", func(e *event.Event) { e.SpecVersion = "" }, "specversion"},
		{"future", func(e *event.Event) { e.Time = now.Add(25 * time.Hour) }, "time"},
		{"no data", func(e *event.Event) { e.Data = nil }, "data"},
		{"nil data pointer", func(e *event.Event) { e.Data = (*event.DataTransferred)(nil) }, "data"},
		{"data of another type", func(e *event.Event) { e.Data = &event.DataUsed{} }, "data"},
		{"data not a pointer", func(e *event.Event) { e.Data = *e.Data.(*event.DataTransferred) }, "data"},
		{"data a map", func(e *event.Event) { e.Data = map[string]any{} }, "data"},
		{"bad region", func(e *event.Event) { e.Data.(*event.DataTransferred).ToRegion = "EU" }, "data.to_region"},
		{"empty categories", func(e *event.Event) { e.Data.(*event.DataTransferred).Categories = []string{} }, "data.categories"},
		{"missing purpose", func(e *event.Event) { e.Data.(*event.DataTransferred).Purpose = "" }, "data.purpose"},
		{"custos type", func(e *event.Event) { e.Type = "custos.key.destroyed" }, "type"},
		{"notice with subject", func(e *event.Event) {
			e.Type = event.TypeNoticePublished
			e.Data = &event.NoticePublished{Version: "1", Effective: now}
		}, "subject"},
		{"erasure both all and list", func(e *event.Event) {
			e.Type = event.TypeDataErased
			e.Data = &event.DataErased{Scope: event.Scope{All: true, Categories: []string{"usage.device"}}, Reason: "request"}
		}, "data.scope"},
		{"erasure empty scope", func(e *event.Event) {
			e.Type = event.TypeDataErased
			e.Data = &event.DataErased{Reason: "request"}
		}, "data.scope"},
		{"field value an object", func(e *event.Event) {
			e.Type = event.TypeDataCorrected
			e.Data = &event.DataCorrected{Categories: []string{"identity.contact"}, Fields: map[string]json.RawMessage{"email": json.RawMessage(`{"a":1}`)}}
		}, "data.fields.email"},
		{"field value not JSON", func(e *event.Event) {
			e.Type = event.TypeDataCorrected
			e.Data = &event.DataCorrected{Categories: []string{"identity.contact"}, Fields: map[string]json.RawMessage{"email": json.RawMessage(`li.wei`)}}
		}, "data.fields.email"},
		{"guardian without ref", func(e *event.Event) {
			e.Type = event.TypeSubjectRegistered
			e.Data = &event.SubjectRegistered{Residence: "CN", Guardian: &event.Guardian{Relation: "mother"}}
		}, "data.guardian.ref"},
		{"expires zero", func(e *event.Event) {
			e.Type = event.TypeConsentGranted
			e.Data = &event.ConsentGranted{ConsentID: "c", NoticeVersion: "1", Purposes: []string{"security"}, Categories: []string{"usage.device"}, Expires: &time.Time{}}
		}, "data.expires"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := validEvent()
			tc.edit(e)
			err := e.Validate(now)
			var fe *event.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a FieldError", err)
			}
			if fe.Field != tc.field {
				t.Errorf("Field = %q (%s), want %q", fe.Field, fe.Message, tc.field)
			}
		})
	}
}

func TestNewData(t *testing.T) {
	for _, typ := range event.Types() {
		d := event.NewData(typ)
		if d == nil {
			t.Errorf("NewData(%s) = nil", typ)
		}
	}
	if event.NewData("custos.key.destroyed") != nil || event.NewData("privacy.nope") != nil {
		t.Error("NewData made data for a type that has none")
	}
}
