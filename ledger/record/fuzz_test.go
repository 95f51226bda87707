package record_test

import (
	"bytes"
	"errors"
	"testing"

	"custos.dev/ledger/record"
)

// FuzzRecordUnmarshal: Unmarshal never panics and fails only with
// ErrMalformed. What it accepts, Marshal writes as a body that Unmarshal
// accepts again and that re-marshals to the identical bytes (Marshal∘Unmarshal
// is the identity on what Marshal writes).
//
// Unmarshal does not insist on Marshal's spelling: it takes white space, any
// key order, escaped characters and explicit empty optional fields, and
// recorded_at is not checked (it does refuse duplicate keys, keys in
// another case and invalid UTF-8, as encoding/json/v2 does). Nothing re-derives a body from a
// parsed record (integrity rests on the stored bytes), so the test asks for
// identical bytes only of what Marshal wrote. Seeds: testdata/fuzz/FuzzRecordUnmarshal.
func FuzzRecordUnmarshal(f *testing.F) {
	for _, r := range records(f) {
		b, err := record.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := record.Unmarshal(b)
		if err != nil {
			if !errors.Is(err, record.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		out, err := record.Marshal(r)
		if err != nil {
			t.Fatalf("Marshal of an accepted record: %v", err)
		}
		r2, err := record.Unmarshal(out)
		if err != nil {
			t.Fatalf("Unmarshal refuses what Marshal wrote from %q: %v\n%s", b, err, out)
		}
		out2, err := record.Marshal(r2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("Marshal∘Unmarshal is not stable:\n%s\n%s", out, out2)
		}
	})
}
