package event_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"custos.dev/ledger/event"
)

// FuzzDecode: Decode never panics; every error is a *FieldError wrapping
// ErrInvalid whose text is valid UTF-8 and short; an accepted event
// validates, and marshals to JSON that Decode accepts and that marshals
// back to the same bytes. Seeds: testdata/fuzz/FuzzDecode and the examples.
func FuzzDecode(f *testing.F) {
	for _, b := range examples(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := event.Decode(b, now)
		if err != nil {
			var fe *event.FieldError
			if !errors.As(err, &fe) || !errors.Is(err, event.ErrInvalid) {
				t.Fatalf("error %v is not a FieldError", err)
			}
			// A message is ours, never the input: bounded and clean.
			if !utf8.ValidString(err.Error()) || len(fe.Message) > 200 || len(fe.Field) > 4096 {
				t.Fatalf("suspicious error %q", err)
			}
			return
		}
		if err := e.Validate(now); err != nil {
			t.Fatalf("Decode accepted what Validate refuses: %v", err)
		}
		out, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		e2, err := event.Decode(out, now)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", out, err)
		}
		out2, err := json.Marshal(e2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("round trip changed\n%s\n%s", out, out2)
		}
	})
}

// FuzzParseDuration: ParseDuration never panics; an accepted duration
// prints in a form that parses back to the same value, and adding it to a
// time never panics. Seeds: testdata/fuzz/FuzzParseDuration.
func FuzzParseDuration(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		d, err := event.ParseDuration(s)
		if err != nil {
			if !errors.Is(err, event.ErrDuration) {
				t.Fatalf("error %v does not wrap ErrDuration", err)
			}
			// Short inputs occur in any English text ("601 " is in "ISO
			// 8601"); the unit tests check echoing with distinctive inputs.
			if len(s) > 40 && strings.Contains(err.Error(), s) {
				t.Fatalf("error shows the input: %v", err)
			}
			return
		}
		if d.Years < 0 || d.Months < 0 || d.Weeks < 0 || d.Days < 0 || d.Hours < 0 || d.Minutes < 0 || d.Seconds < 0 {
			t.Fatalf("negative component in %+v", d)
		}
		d2, err := event.ParseDuration(d.String())
		if err != nil || d2 != d {
			t.Fatalf("%q → %+v → %q → %+v, %v", s, d, d.String(), d2, err)
		}
		base := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
		if d.AddTo(base).Before(base) {
			t.Fatalf("%q moves time backwards", s)
		}
	})
}
