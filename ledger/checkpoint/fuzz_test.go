package checkpoint_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"custos.dev/ledger/checkpoint"
)

// FuzzCheckpointOpen: Open never panics and fails only with ErrInvalid; it
// accepts only notes that golang.org/x/mod/sumdb/note itself verifies as
// signed by the key, whose signed text starts with the key's origin, the
// size and the root Open returns. Seeds: testdata/fuzz/FuzzCheckpointOpen
// (notes signed by testSKey, by another key, tampered, with extensions).
func FuzzCheckpointOpen(f *testing.F) {
	signer := mustSigner(f, testSKey)
	for _, size := range []int64{1, 2, 1 << 40} {
		msg, err := checkpoint.Sign(origin, size, rootOf(int(size%7)), signer)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(msg)
	}
	verifier, err := note.NewVerifier(testVKey)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		in := bytes.Clone(msg)
		cp, err := checkpoint.Open(msg, testVKey)
		if err != nil {
			if !errors.Is(err, checkpoint.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		n, err := note.Open(in, note.VerifierList(verifier))
		if err != nil {
			t.Fatalf("Open accepted a note that note.Open refuses: %v\n%q", err, in)
		}
		signed := false
		for _, s := range n.Sigs {
			signed = signed || (s.Name == verifier.Name() && s.Hash == verifier.KeyHash())
		}
		if !signed {
			t.Fatalf("accepted note carries no signature by the key: %q", in)
		}
		lines := strings.SplitN(n.Text, "\n", 4)
		if len(lines) < 4 || lines[0] != origin || cp.Origin != origin ||
			lines[1] != strconv.FormatInt(cp.Size, 10) || lines[2] != base64.StdEncoding.EncodeToString(cp.Root[:]) {
			t.Fatalf("Open = %+v, signed text %q", cp, n.Text)
		}
		if cp.Size < 0 || !bytes.Equal(cp.Note, in) {
			t.Fatalf("Open = %+v", cp)
		}
	})
}
