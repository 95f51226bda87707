// Package bundle writes and verifies Custos audit bundles: one gzipped tar
// holding a range of ledger events, every signed checkpoint, an inclusion
// proof of each event in the latest checkpoint's tree, consistency proofs
// between successive checkpoints, the checkpoint verifier key and a
// manifest. Verification needs nothing but the file: no NATS, no Vault, no
// Custos server. docs/audit-bundle.md specifies the format.
package bundle

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"custos.dev/ledger/checkpoint"
	"custos.dev/ledger/record"
)

// Format is the manifest's format string.
const Format = "custos-audit-bundle/1"

// File names inside the bundle.
const (
	ManifestFile    = "manifest.json"
	EventsFile      = "events.ndjson"
	CheckpointsFile = "checkpoints.ndjson"
	InclusionFile   = "inclusion.ndjson"
	ConsistencyFile = "consistency.ndjson"
	KeyFile         = "verifier.key"
)

// Limits that keep a hostile bundle from exhausting the verifier.
const (
	MaxFileSize = 4 << 30
	MaxLine     = 16 << 20
)

// ErrInvalid reports a bundle that is not well formed.
var ErrInvalid = errors.New("invalid audit bundle")

// Manifest describes a bundle.
type Manifest struct {
	Format      string            `json:"format"`
	Origin      string            `json:"origin"`
	VerifierKey string            `json:"verifier_key"`
	TreeSize    int64             `json:"tree_size"`
	FromSeq     uint64            `json:"from_seq"`
	ToSeq       uint64            `json:"to_seq"`
	FromTime    string            `json:"from_time,omitempty"`
	ToTime      string            `json:"to_time,omitempty"`
	Events      int               `json:"events"`
	Checkpoints int               `json:"checkpoints"`
	CreatedAt   string            `json:"created_at"`
	Files       map[string]string `json:"files"` // name -> "sha256:<hex>"
}

// Event is one line of events.ndjson: a stored body byte for byte.
type Event struct {
	Seq   uint64          `json:"seq"`
	Event json.RawMessage `json:"event"`
}

// Checkpoint is one line of checkpoints.ndjson.
type Checkpoint struct {
	Seq  uint64 `json:"seq"` // sequence in LEDGER_CHECKPOINTS
	Note string `json:"note"`
}

// Inclusion is one line of inclusion.ndjson.
type Inclusion struct {
	Seq      uint64   `json:"seq"`
	TreeSize int64    `json:"tree_size"`
	Hashes   []string `json:"hashes"`
}

// Consistency is one line of consistency.ndjson.
type Consistency struct {
	From   int64    `json:"from"`
	To     int64    `json:"to"`
	Hashes []string `json:"hashes"`
}

// Contents is everything a bundle holds, for Write.
type Contents struct {
	Manifest    Manifest
	Events      []Event
	Checkpoints []Checkpoint
	Inclusion   []Inclusion
	Consistency []Consistency
	// Damaged names the files that do not match their manifest digests.
	// Read keeps going so that Verify can name the first bad sequence.
	Damaged []string
	// eventsCut is set when events.ndjson stops parsing: Events then holds
	// the lines before the damage.
	eventsCut string
}

// Write writes c as a bundle to w, filling in the manifest's file digests
// and counts.
func Write(w io.Writer, c *Contents) error {
	files := map[string][]byte{}
	files[EventsFile] = ndjson(c.Events)
	files[CheckpointsFile] = ndjson(c.Checkpoints)
	files[InclusionFile] = ndjson(c.Inclusion)
	files[ConsistencyFile] = ndjson(c.Consistency)
	files[KeyFile] = []byte(c.Manifest.VerifierKey + "\n")
	m := c.Manifest
	m.Format = Format
	m.Events, m.Checkpoints = len(c.Events), len(c.Checkpoints)
	m.Files = map[string]string{}
	for name, b := range files {
		sum := sha256.Sum256(b)
		m.Files[name] = "sha256:" + hex.EncodeToString(sum[:])
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	files[ManifestFile] = append(mb, '\n')
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	// The manifest goes first so a streaming reader meets it before the rest.
	sort.SliceStable(names, func(i, j int) bool { return names[i] == ManifestFile })
	mod := time.Now().UTC()
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), ModTime: mod, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(files[n]); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

func ndjson[T any](items []T) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, it := range items {
		_ = enc.Encode(it)
	}
	return buf.Bytes()
}

// Read parses a bundle. It checks structure and file digests, not proofs.
func Read(r io.Reader) (*Contents, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("%w: not gzip: %v", ErrInvalid, err)
	}
	tr := tar.NewReader(gz)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: tar: %v", ErrInvalid, err)
		}
		if h.Typeflag != tar.TypeReg || strings.Contains(h.Name, "/") || h.Size > MaxFileSize {
			return nil, fmt.Errorf("%w: unexpected entry %q", ErrInvalid, h.Name)
		}
		if _, dup := files[h.Name]; dup {
			return nil, fmt.Errorf("%w: %s appears twice", ErrInvalid, h.Name)
		}
		b, err := io.ReadAll(io.LimitReader(tr, MaxFileSize))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, h.Name, err)
		}
		files[h.Name] = b
	}
	c := &Contents{}
	mb, ok := files[ManifestFile]
	if !ok {
		return nil, fmt.Errorf("%w: no %s", ErrInvalid, ManifestFile)
	}
	if err := strictJSON(mb, &c.Manifest); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, ManifestFile, err)
	}
	if c.Manifest.Format != Format {
		return nil, fmt.Errorf("%w: format %q, want %q", ErrInvalid, c.Manifest.Format, Format)
	}
	for _, name := range []string{EventsFile, CheckpointsFile, InclusionFile, ConsistencyFile, KeyFile} {
		b, ok := files[name]
		if !ok {
			return nil, fmt.Errorf("%w: no %s", ErrInvalid, name)
		}
		sum := sha256.Sum256(b)
		if c.Manifest.Files[name] != "sha256:"+hex.EncodeToString(sum[:]) {
			c.Damaged = append(c.Damaged, name)
		}
	}
	if strings.TrimSpace(string(files[KeyFile])) != c.Manifest.VerifierKey {
		return nil, fmt.Errorf("%w: %s differs from the manifest's verifier key", ErrInvalid, KeyFile)
	}
	if err := lines(files[EventsFile], &c.Events); err != nil {
		if !slices.Contains(c.Damaged, EventsFile) {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, EventsFile, err)
		}
		c.eventsCut = err.Error()
	}
	if err := lines(files[CheckpointsFile], &c.Checkpoints); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, CheckpointsFile, err)
	}
	if err := lines(files[InclusionFile], &c.Inclusion); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, InclusionFile, err)
	}
	if err := lines(files[ConsistencyFile], &c.Consistency); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, ConsistencyFile, err)
	}
	return c, nil
}

func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

func lines[T any](b []byte, out *[]T) error {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), MaxLine)
	n := 0
	for sc.Scan() {
		n++
		var v T
		if err := strictJSON(sc.Bytes(), &v); err != nil {
			return fmt.Errorf("line %d: %v", n, err)
		}
		*out = append(*out, v)
	}
	return sc.Err()
}

// Result is the outcome of Verify.
type Result struct {
	OK          bool   `json:"ok"`
	Events      int    `json:"events"`
	Checkpoints int    `json:"checkpoints"`
	TreeSize    int64  `json:"tree_size"`
	FromSeq     uint64 `json:"from_seq"`
	ToSeq       uint64 `json:"to_seq"`
	FirstBadSeq uint64 `json:"first_bad_seq,omitempty"`
	// BadCheckpoint is the LEDGER_CHECKPOINTS sequence of a bad checkpoint.
	BadCheckpoint uint64 `json:"bad_checkpoint_seq,omitempty"`
	Problem       string `json:"problem,omitempty"`
}

// Verify checks a parsed bundle against its own verifier key, or against
// trustedKey when given (an auditor should pin the key it got out of band).
func Verify(c *Contents, trustedKey string) *Result {
	m := &c.Manifest
	res := &Result{Events: len(c.Events), Checkpoints: len(c.Checkpoints), TreeSize: m.TreeSize, FromSeq: m.FromSeq, ToSeq: m.ToSeq}
	bad := func(seq, cpSeq uint64, format string, args ...any) *Result {
		res.FirstBadSeq, res.BadCheckpoint, res.Problem = seq, cpSeq, fmt.Sprintf(format, args...)
		return res
	}
	vkey := m.VerifierKey
	if trustedKey != "" && trustedKey != vkey {
		return bad(0, 0, "the bundle's verifier key is not the trusted key")
	}
	// Checkpoints: signed, growing, and each consistent with the next.
	var cps []*checkpoint.Checkpoint
	for _, raw := range c.Checkpoints {
		cp, err := checkpoint.Open([]byte(raw.Note), vkey)
		if err != nil {
			return bad(0, raw.Seq, "checkpoint seq %d: %v", raw.Seq, err)
		}
		if n := len(cps); n > 0 && cp.Size < cps[n-1].Size {
			return bad(0, raw.Seq, "checkpoint seq %d: tree size %d is smaller than the previous %d", raw.Seq, cp.Size, cps[n-1].Size)
		}
		cps = append(cps, cp)
	}
	if len(cps) == 0 {
		return bad(0, 0, "the bundle holds no checkpoint")
	}
	latest := cps[len(cps)-1]
	if latest.Size != m.TreeSize {
		return bad(0, c.Checkpoints[len(cps)-1].Seq, "the latest checkpoint covers %d events, the manifest says %d", latest.Size, m.TreeSize)
	}
	proofs := map[[2]int64][]string{}
	for _, p := range c.Consistency {
		proofs[[2]int64{p.From, p.To}] = p.Hashes
	}
	for i := 1; i < len(cps); i++ {
		a, b := cps[i-1], cps[i]
		if a.Size == b.Size {
			if a.Root != b.Root {
				return bad(0, c.Checkpoints[i].Seq, "checkpoint seq %d has the same size as the previous one but another root", c.Checkpoints[i].Seq)
			}
			continue
		}
		p, ok := proofs[[2]int64{a.Size, b.Size}]
		if !ok {
			return bad(0, c.Checkpoints[i].Seq, "no consistency proof from %d to %d", a.Size, b.Size)
		}
		hs, err := decodeHashes(p)
		if err != nil || tlog.CheckTree(tlog.TreeProof(hs), b.Size, b.Root, a.Size, a.Root) != nil {
			return bad(0, c.Checkpoints[i].Seq, "checkpoint seq %d is not consistent with the previous checkpoint", c.Checkpoints[i].Seq)
		}
	}
	// Events: contiguous, well formed, each included in the latest tree.
	incl := map[uint64]Inclusion{}
	for _, p := range c.Inclusion {
		incl[p.Seq] = p
	}
	next := m.FromSeq
	for _, e := range c.Events {
		if e.Seq != next {
			return bad(next, 0, "sequence %d is missing from the bundle", next)
		}
		next++
		if _, err := record.Unmarshal(e.Event); err != nil {
			return bad(e.Seq, 0, "sequence %d is not a valid record: %v", e.Seq, err)
		}
		if int64(e.Seq) > latest.Size {
			return bad(e.Seq, 0, "sequence %d is beyond the latest checkpoint", e.Seq)
		}
		p, ok := incl[e.Seq]
		if !ok || p.TreeSize != latest.Size {
			return bad(e.Seq, 0, "no inclusion proof for sequence %d", e.Seq)
		}
		hs, err := decodeHashes(p.Hashes)
		if err != nil {
			return bad(e.Seq, 0, "inclusion proof of sequence %d: %v", e.Seq, err)
		}
		if tlog.CheckRecord(tlog.RecordProof(hs), latest.Size, latest.Root, int64(e.Seq-1), tlog.RecordHash(e.Event)) != nil {
			return bad(e.Seq, 0, "sequence %d is not the event the signed tree holds: it was altered", e.Seq)
		}
	}
	if c.eventsCut != "" {
		return bad(next, 0, "sequence %d is damaged: %s %s does not parse", next, EventsFile, c.eventsCut)
	}
	if len(c.Events) == 0 && (m.FromSeq != 0 || m.ToSeq != 0) {
		// An export whose range matched nothing says 0..0; a bundle that
		// names a range must hold it, or stripping every event would pass.
		return bad(m.FromSeq, 0, "sequence %d is missing from the bundle", m.FromSeq)
	}
	if len(c.Events) > 0 && next-1 != m.ToSeq {
		return bad(next, 0, "the bundle ends at sequence %d, the manifest says %d", next-1, m.ToSeq)
	}
	if len(c.Damaged) > 0 {
		return bad(0, 0, "%s does not match its digest in the manifest, though every event verifies", strings.Join(c.Damaged, ", "))
	}
	res.OK = true
	return res
}

func decodeHashes(in []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(in))
	for i, s := range in {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != tlog.HashSize {
			return nil, fmt.Errorf("hash %d is not a base64 SHA-256", i)
		}
		copy(out[i][:], b)
	}
	return out, nil
}
