package bundle_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"custos.dev/ledger/bundle"
)

func TestRoundTrip(t *testing.T) {
	l := newLog(t)
	c := l.contents(t)
	b := write(t, c)

	// The layout docs/audit-bundle.md promises: regular top-level files,
	// the manifest first, each file's digest in the manifest.
	entries := unpack(t, b)
	var names []string
	for _, e := range entries {
		names = append(names, e.hdr.Name)
		if e.hdr.Typeflag != tar.TypeReg || strings.Contains(e.hdr.Name, "/") {
			t.Fatalf("entry %q type %c", e.hdr.Name, e.hdr.Typeflag)
		}
	}
	want := []string{bundle.ManifestFile, bundle.CheckpointsFile, bundle.ConsistencyFile, bundle.EventsFile, bundle.InclusionFile, bundle.KeyFile}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("entries %v, want %v", names, want)
	}
	var m bundle.Manifest
	if err := json.Unmarshal(entries[0].data, &m); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries[1:] {
		sum := sha256.Sum256(e.data)
		if m.Files[e.hdr.Name] != "sha256:"+hex.EncodeToString(sum[:]) {
			t.Fatalf("digest of %s: manifest %q", e.hdr.Name, m.Files[e.hdr.Name])
		}
	}
	if m.Format != bundle.Format || m.Events != toSeq-fromSeq+1 || m.Checkpoints != len(cpSizes) {
		t.Fatalf("manifest %+v", m)
	}
	// Events are embedded byte for byte.
	for _, e := range entries {
		if e.hdr.Name == bundle.EventsFile {
			for seq := fromSeq; seq <= toSeq; seq++ {
				if !bytes.Contains(e.data, append([]byte(`"event":`), l.bodies[seq-1]...)) {
					t.Fatalf("event %d is not embedded verbatim", seq)
				}
			}
		}
		if e.hdr.Name == bundle.KeyFile && string(e.data) != testVKey+"\n" {
			t.Fatalf("verifier.key = %q", e.data)
		}
	}

	got, err := bundle.Read(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	c.Manifest.Format, c.Manifest.Files = bundle.Format, m.Files
	c.Manifest.Events, c.Manifest.Checkpoints = m.Events, m.Checkpoints
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("Read gives\n%+v\nwant\n%+v", got, c)
	}
	for _, key := range []string{"", testVKey} {
		res := bundle.Verify(got, key)
		if !res.OK || res.Problem != "" || res.Events != toSeq-fromSeq+1 || res.Checkpoints != 3 || res.TreeSize != 10 ||
			res.FromSeq != fromSeq || res.ToSeq != toSeq || res.FirstBadSeq != 0 || res.BadCheckpoint != 0 {
			t.Fatalf("Verify(trusted %q) = %+v", key, res)
		}
	}
	if res := bundle.Verify(got, otherTestVKey); res.OK || !strings.Contains(res.Problem, "trusted key") {
		t.Fatalf("Verify with another pinned key = %+v", res)
	}
}

// A forger who rewrites the bundle (digests and all) is caught by the proofs,
// at the sequence or checkpoint docs/audit-bundle.md says.
func TestVerifyRefusesTampering(t *testing.T) {
	l := newLog(t)
	other := mustSigner(t, otherTestSKey)
	for _, tc := range []struct {
		name          string
		tamper        func(c *bundle.Contents)
		firstBad      uint64
		badCheckpoint uint64
		problem       string
	}{
		{"altered event", func(c *bundle.Contents) {
			c.Events[3].Event = bytes.Replace(c.Events[3].Event, []byte("marketing"), []byte("marketinG"), 1)
		}, 5, 0, "altered"},
		{"event that is no record", func(c *bundle.Contents) {
			c.Events[3].Event = json.RawMessage(`{"v":1}`)
		}, 5, 0, "not a valid record"},
		{"event from another position", func(c *bundle.Contents) {
			c.Events[3].Event = c.Events[4].Event
		}, 5, 0, "altered"},
		{"removed first event", func(c *bundle.Contents) { c.Events = c.Events[1:] }, fromSeq, 0, "missing"},
		{"removed middle event", func(c *bundle.Contents) {
			c.Events = append(c.Events[:3:3], c.Events[4:]...)
		}, 5, 0, "missing"},
		{"removed every event", func(c *bundle.Contents) { c.Events, c.Inclusion = nil, nil }, fromSeq, 0, "missing"},
		{"removed last event", func(c *bundle.Contents) { c.Events = c.Events[:len(c.Events)-1] }, toSeq, 0, "ends at"},
		{"reordered events", func(c *bundle.Contents) {
			c.Events[2], c.Events[3] = c.Events[3], c.Events[2]
		}, 4, 0, "missing"},
		{"event beyond the latest checkpoint", func(c *bundle.Contents) {
			c.Events = append(c.Events, bundle.Event{Seq: 10, Event: l.bodies[9]}, bundle.Event{Seq: 11, Event: l.bodies[9]})
			p, err := l.tree.InclusionProof(9, 10)
			if err != nil {
				t.Fatal(err)
			}
			c.Inclusion = append(c.Inclusion, bundle.Inclusion{Seq: 10, TreeSize: 10, Hashes: b64(p)})
			c.Manifest.ToSeq = 11
		}, 11, 0, "beyond the latest checkpoint"},
		{"swapped checkpoints", func(c *bundle.Contents) {
			c.Checkpoints[1], c.Checkpoints[2] = c.Checkpoints[2], c.Checkpoints[1]
		}, 0, 2, "smaller than the previous"},
		{"checkpoint forged with another key", func(c *bundle.Contents) {
			c.Checkpoints[1].Note = l.note(t, other, 6)
		}, 0, 2, "checkpoint seq 2"},
		{"checkpoint of a forked tree", func(c *bundle.Contents) {
			f := newLog(t)
			f.bodies[4] = bytes.Replace(f.bodies[4], []byte("acme"), []byte("evil"), 1)
			f.tree = rebuild(t, f.bodies)
			c.Checkpoints[1].Note = f.note(t, l.signer, 6)
		}, 0, 2, "not consistent"},
		{"latest checkpoint dropped", func(c *bundle.Contents) { c.Checkpoints = c.Checkpoints[:2] }, 0, 2, "manifest says 10"},
		{"no checkpoint", func(c *bundle.Contents) { c.Checkpoints = nil }, 0, 0, "no checkpoint"},
		{"altered signed size", func(c *bundle.Contents) {
			c.Checkpoints[2].Note = strings.Replace(c.Checkpoints[2].Note, "\n10\n", "\n11\n", 1)
		}, 0, 3, "checkpoint seq 3"},
		{"missing inclusion proof", func(c *bundle.Contents) {
			c.Inclusion = append(c.Inclusion[:2:2], c.Inclusion[3:]...)
		}, 4, 0, "no inclusion proof"},
		{"inclusion proof for another tree size", func(c *bundle.Contents) {
			p, err := l.tree.InclusionProof(3, 6)
			if err != nil {
				t.Fatal(err)
			}
			c.Inclusion[2] = bundle.Inclusion{Seq: 4, TreeSize: 6, Hashes: b64(p)}
		}, 4, 0, "no inclusion proof"},
		{"inclusion proof of another leaf", func(c *bundle.Contents) {
			c.Inclusion[2].Hashes = c.Inclusion[3].Hashes
		}, 4, 0, "altered"},
		{"inclusion hash not base64", func(c *bundle.Contents) {
			c.Inclusion[2].Hashes = []string{"!!"}
		}, 4, 0, "inclusion proof of sequence 4"},
		{"missing consistency proof", func(c *bundle.Contents) { c.Consistency = c.Consistency[:1] }, 0, 3, "no consistency proof from 6 to 10"},
		{"wrong consistency proof", func(c *bundle.Contents) {
			c.Consistency[1].Hashes = c.Consistency[0].Hashes
		}, 0, 3, "not consistent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := l.contents(t)
			tc.tamper(c)
			got, err := bundle.Read(bytes.NewReader(write(t, c)))
			if err != nil {
				t.Fatalf("Read refuses a well-formed forgery: %v", err)
			}
			res := bundle.Verify(got, testVKey)
			if res.OK || res.FirstBadSeq != tc.firstBad || res.BadCheckpoint != tc.badCheckpoint || !strings.Contains(res.Problem, tc.problem) {
				t.Fatalf("Verify = %+v\nwant first bad seq %d, bad checkpoint %d, problem mentioning %q", res, tc.firstBad, tc.badCheckpoint, tc.problem)
			}
		})
	}
}

// Read refuses bundles that are not well formed, before any proof is looked at.
func TestReadRefusesMalformedBundles(t *testing.T) {
	l := newLog(t)
	good := unpack(t, write(t, l.contents(t)))
	find := func(name string) entry {
		for _, e := range good {
			if e.hdr.Name == name {
				return e
			}
		}
		t.Fatalf("no %s", name)
		return entry{}
	}
	without := func(name string) []entry {
		var out []entry
		for _, e := range good {
			if e.hdr.Name != name {
				out = append(out, e)
			}
		}
		return out
	}
	renamed := func(name, to string) []entry {
		out := append([]entry(nil), good...)
		for i := range out {
			if out[i].hdr.Name == name {
				out[i].hdr.Name = to
			}
		}
		return out
	}
	with := func(e entry) []entry { return append(append([]entry(nil), good...), e) }
	events := find(bundle.EventsFile)
	manifest := find(bundle.ManifestFile)
	setManifest := func(edit func(m map[string]any)) []entry { return setManifestOf(t, good, edit) }

	for name, b := range map[string][]byte{
		"not gzip":                   []byte("manifest.json"),
		"empty":                      nil,
		"duplicate entry":            pack(t, with(events)),
		"duplicate manifest":         pack(t, with(manifest)),
		"path traversal":             pack(t, renamed(bundle.EventsFile, "../"+bundle.EventsFile)),
		"absolute path":              pack(t, renamed(bundle.EventsFile, "/tmp/"+bundle.EventsFile)),
		"nested file":                pack(t, renamed(bundle.EventsFile, "x/"+bundle.EventsFile)),
		"extra traversal entry":      pack(t, with(entry{tar.Header{Name: "../../etc/cron.d/x", Mode: 0o644, Typeflag: tar.TypeReg}, []byte("x")})),
		"symlink entry":              pack(t, with(entry{tar.Header{Name: "link", Linkname: "/etc/passwd", Typeflag: tar.TypeSymlink}, nil})),
		"directory entry":            pack(t, with(entry{tar.Header{Name: "dir/", Mode: 0o755, Typeflag: tar.TypeDir}, nil})),
		"missing manifest":           pack(t, without(bundle.ManifestFile)),
		"missing events":             pack(t, without(bundle.EventsFile)),
		"missing consistency":        pack(t, without(bundle.ConsistencyFile)),
		"missing key":                pack(t, without(bundle.KeyFile)),
		"unknown format":             pack(t, setManifest(func(m map[string]any) { m["format"] = "custos-audit-bundle/2" })),
		"unknown manifest field":     pack(t, setManifest(func(m map[string]any) { m["extra"] = 1 })),
		"manifest not json":          pack(t, redigestManifest(good, []byte("{"))),
		"event line not json":        pack(t, redigest(t, good, bundle.EventsFile, []byte("{\"seq\":2,\"event\":{}}\nnot json\n"))),
		"unknown event field":        pack(t, redigest(t, good, bundle.EventsFile, []byte(`{"seq":2,"event":{},"email":"a@b"}`+"\n"))),
		"checkpoint line not object": pack(t, redigest(t, good, bundle.CheckpointsFile, []byte("[]\n"))),
		"truncated gzip":             write(t, l.contents(t))[:200],
	} {
		if c, err := bundle.Read(bytes.NewReader(b)); !errors.Is(err, bundle.ErrInvalid) {
			t.Errorf("%s: Read = %v, %v; want ErrInvalid", name, c != nil, err)
		}
	}
}

func redigestManifest(entries []entry, data []byte) []entry {
	out := append([]entry(nil), entries...)
	out[0].data = data
	return out
}

// A file that does not match its digest is read anyway, so that Verify can
// name the first sequence that is wrong; a damage no event shows is still a
// failure, naming the file.
func TestVerifyNamesTheSequenceOfADamagedEvent(t *testing.T) {
	l := newLog(t)
	good := unpack(t, write(t, l.contents(t)))
	damaged := append([]entry(nil), good...)
	var seq uint64
	for i := range damaged {
		if damaged[i].hdr.Name == bundle.EventsFile {
			for n, line := range bytes.Split(damaged[i].data, []byte("\n")) {
				if bytes.Contains(line, []byte("marketing")) {
					seq = uint64(n + 1)
					break
				}
			}
			damaged[i].data = bytes.Replace(damaged[i].data, []byte("marketing"), []byte("marketinG"), 1)
		}
	}
	c, err := bundle.Read(bytes.NewReader(pack(t, damaged)))
	if err != nil {
		t.Fatalf("Read of a bundle with a damaged event: %v", err)
	}
	res := bundle.Verify(c, "")
	first := c.Events[0].Seq
	if res.OK || res.FirstBadSeq != first+seq-1 || !strings.Contains(res.Problem, "altered") {
		t.Errorf("Verify: %+v; want sequence %d named as altered", res, first+seq-1)
	}

	b := pack(t, setManifestOf(t, good, func(m map[string]any) { f := m["files"].(map[string]any); f["events.ndjson"] = f["inclusion.ndjson"] }))
	if c, err = bundle.Read(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if res := bundle.Verify(c, ""); res.OK || !strings.Contains(res.Problem, "events.ndjson does not match its digest") {
		t.Errorf("a wrong digest alone: %+v", res)
	}
}

// setManifestOf is entries with the manifest (the first entry) edited.
func setManifestOf(t *testing.T, entries []entry, edit func(m map[string]any)) []entry {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(entries[0].data, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, _ := json.Marshal(m)
	out := append([]entry(nil), entries...)
	out[0].data = b
	return out
}
