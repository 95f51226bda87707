package bundle_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"testing"

	"custos.dev/ledger/bundle"
)

// fuzzFiles are the files FuzzBundleRead replaces in mode 2.
var fuzzFiles = []string{bundle.EventsFile, bundle.CheckpointsFile, bundle.InclusionFile, bundle.ConsistencyFile, bundle.KeyFile}

// FuzzBundleRead: Read never panics and fails only with ErrInvalid, and
// Verify never panics on what Read accepts. how%4 picks what data is:
//
//	0: the bundle file itself (arbitrary bytes, or a valid bundle mutated);
//	1: the tar inside the gzip (mutations that survive decompression; the
//	   committed corpus has small tars, a full bundle's is 7 KiB of mostly
//	   padding);
//	2: file fuzzFiles[how/4%5] of a valid bundle, with the manifest's
//	   digest rewritten to match, as a forger would (reaches Verify);
//	3: the manifest of a valid bundle.
//
// Every checkpoint testSKey ever signed is of the test log, so whatever
// Verify passes under that key must be the test log's own events, in the
// manifest's range. Seeds: testdata/fuzz/FuzzBundleRead.
func FuzzBundleRead(f *testing.F) {
	l := newLog(f)
	// A small bundle (one event, two checkpoints): the fuzzer minimizes
	// every new input it finds, which costs quadratic time in its length.
	valid := write(f, l.contentsOf(f, 9, 9, []int64{6, 10}))
	base := unpack(f, valid)
	f.Add(valid, uint8(0))
	for i, name := range fuzzFiles {
		for _, e := range base {
			if e.hdr.Name == name {
				f.Add(e.data, uint8(2+4*i))
			}
		}
	}
	f.Add(base[0].data, uint8(3))

	f.Fuzz(func(t *testing.T, data []byte, how uint8) {
		var b []byte
		switch how % 4 {
		case 0:
			b = data
		case 1:
			b = gzipOf(t, data)
		case 2:
			b = pack(t, redigest(t, base, fuzzFiles[int(how/4)%len(fuzzFiles)], data))
		case 3:
			b = pack(t, redigestManifest(base, data))
		}
		c, err := bundle.Read(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, bundle.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		_ = bundle.Verify(c, "")
		res := bundle.Verify(c, testVKey)
		if res.OK != (res.Problem == "") {
			t.Fatalf("OK %v with problem %q", res.OK, res.Problem)
		}
		if !res.OK {
			return
		}
		m := c.Manifest
		if len(c.Events) == 0 {
			if m.FromSeq != 0 || m.ToSeq != 0 {
				t.Fatalf("no events passed for range %d..%d", m.FromSeq, m.ToSeq)
			}
			return
		}
		if c.Events[0].Seq != m.FromSeq || c.Events[len(c.Events)-1].Seq != m.ToSeq {
			t.Fatalf("events %d..%d passed for range %d..%d", c.Events[0].Seq, c.Events[len(c.Events)-1].Seq, m.FromSeq, m.ToSeq)
		}
		for i, e := range c.Events {
			if e.Seq != m.FromSeq+uint64(i) || e.Seq < 1 || e.Seq > logSize || !bytes.Equal(e.Event, l.bodies[e.Seq-1]) {
				t.Fatalf("event %d (seq %d) passed but is not the log's: %s", i, e.Seq, e.Event)
			}
		}
	})
}

func tarOf(t testing.TB, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipOf(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if _, err := gz.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
