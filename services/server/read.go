package server

import (
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"custos.dev/ledger"
	"custos.dev/ledger/consentrecord"
	"custos.dev/ledger/event"
	"custos.dev/ledger/policy"
	"custos.dev/ledger/state"
	"custos.dev/ledger/tree"
	"custos.dev/ledger/whatif"
)

// ReplayLine is one line of GET /v1/events. Event is the stored body,
// byte for byte, so that a verifier can hash it.
type ReplayLine struct {
	Seq      uint64          `json:"seq"`
	LeafHash string          `json:"leaf_hash"`
	Event    json.RawMessage `json:"event"`
}

func queryTime(r *http.Request, name string) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return t, &Error{Code: CodeInvalidRequest, Field: name, Message: "must be an RFC 3339 time"}
	}
	return t, nil
}

func queryUint(r *http.Request, name string) (uint64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, &Error{Code: CodeInvalidRequest, Field: name, Message: "must be a non-negative integer"}
	}
	return n, nil
}

// filterFrom parses the replay filters shared by the API and the CLI.
func (s *Server) filterFrom(r *http.Request) (ledger.Filter, error) {
	var f ledger.Filter
	var err error
	q := r.URL.Query()
	if subj := q.Get("subject"); subj != "" {
		f.Pseudonym = s.l.Pseudonym(subj)
	}
	if t := q.Get("type"); t != "" {
		if !slices.Contains(event.Types(), t) && !strings.HasPrefix(t, "custos.") {
			return f, &Error{Code: CodeInvalidRequest, Field: "type", Message: "unknown event type"}
		}
		f.Type = t
	}
	if f.Since, err = queryTime(r, "since"); err != nil {
		return f, err
	}
	if f.Until, err = queryTime(r, "until"); err != nil {
		return f, err
	}
	if f.FromSeq, err = queryUint(r, "from_seq"); err != nil {
		return f, err
	}
	if f.ToSeq, err = queryUint(r, "to_seq"); err != nil {
		return f, err
	}
	return f, nil
}

func (s *Server) handleReplay(w http.ResponseWriter, r *http.Request) error {
	f, err := s.filterFrom(r)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	flusher, _ := w.(http.Flusher)
	n := 0
	err = ledger.NewReader(s.l.JetStream()).Replay(r.Context(), f, func(e ledger.Entry) error {
		h := leafHash(e.Body)
		if err := enc.Encode(ReplayLine{Seq: e.Seq, LeafHash: h, Event: e.Body}); err != nil {
			return err
		}
		if n++; n%512 == 0 && flusher != nil {
			flusher.Flush()
		}
		return nil
	})
	if err != nil && n == 0 {
		return err
	}
	if err != nil {
		// Headers are gone; end the stream with an error line the client
		// recognises rather than a silent truncation.
		_ = enc.Encode(ErrorBody{Error: toAPIError(err)})
	}
	return nil
}

func leafHash(body []byte) string {
	h := tree.LeafHashOf(body)
	return base64.StdEncoding.EncodeToString(h[:])
}

func (s *Server) handleCheckpoint(w http.ResponseWriter, r *http.Request) error {
	cp := s.l.Latest()
	if cp == nil {
		return errorf(CodeNotFound, "no checkpoint has been signed yet")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(cp.Note)
	return nil
}

func (s *Server) handleCheckpoints(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	return ledger.NewReader(s.l.JetStream()).Checkpoints(r.Context(), func(seq uint64, note []byte) error {
		return enc.Encode(map[string]any{"seq": seq, "note": string(note)})
	})
}

func (s *Server) handleKey(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(s.l.VerifierKey() + "\n"))
	return nil
}

func b64s[T ~[32]byte](hs []T) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	return out
}

func (s *Server) latestSize() (int64, error) {
	cp := s.l.Latest()
	if cp == nil {
		return 0, errorf(CodeNotFound, "no checkpoint has been signed yet")
	}
	return cp.Size, nil
}

// treeSize reads a tree-size parameter: the latest checkpoint's size when
// absent, and never beyond it (proofs are only served for signed trees).
func (s *Server) treeSize(r *http.Request, name string) (uint64, error) {
	latest, err := s.latestSize()
	if err != nil {
		return 0, err
	}
	size, err := queryUint(r, name)
	if err != nil {
		return 0, err
	}
	if size == 0 {
		size = uint64(latest)
	}
	if size > uint64(latest) {
		return 0, &Error{Code: CodeInvalidRequest, Field: name, Message: "beyond the latest checkpoint (" + strconv.FormatInt(latest, 10) + ")"}
	}
	return size, nil
}

func (s *Server) handleInclusion(w http.ResponseWriter, r *http.Request) error {
	size, err := s.treeSize(r, "tree_size")
	if err != nil {
		return err
	}
	seq, err := queryUint(r, "seq")
	if err != nil {
		return err
	}
	if seq == 0 || seq > size {
		return &Error{Code: CodeInvalidRequest, Field: "seq", Message: "must be between 1 and tree_size"}
	}
	p, err := s.l.Tree().InclusionProof(int64(seq-1), int64(size))
	if err != nil {
		return errorf(CodeInvalidRequest, err.Error())
	}
	leaf, _ := s.l.Tree().LeafHash(int64(seq - 1))
	writeJSON(w, http.StatusOK, map[string]any{
		"leaf_index": seq - 1, "tree_size": size, "leaf_hash": base64.StdEncoding.EncodeToString(leaf[:]), "hashes": b64s(p),
	})
	return nil
}

// handleInclusions streams inclusion proofs for a range of sequences
// (NDJSON), so that an audit bundle needs one request, not one per event.
func (s *Server) handleInclusions(w http.ResponseWriter, r *http.Request) error {
	size, err := s.treeSize(r, "tree_size")
	if err != nil {
		return err
	}
	from, err := queryUint(r, "from_seq")
	if err != nil {
		return err
	}
	to, err := queryUint(r, "to_seq")
	if err != nil {
		return err
	}
	if to == 0 || to > size {
		to = size
	}
	if from == 0 || from > to {
		return &Error{Code: CodeInvalidRequest, Field: "from_seq", Message: "must be between 1 and to_seq"}
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	for seq := from; seq <= to; seq++ {
		p, err := s.l.Tree().InclusionProof(int64(seq-1), int64(size))
		if err != nil {
			return err
		}
		if err := enc.Encode(map[string]any{"seq": seq, "tree_size": size, "hashes": b64s(p)}); err != nil {
			return nil
		}
	}
	return nil
}

func (s *Server) handleConsistency(w http.ResponseWriter, r *http.Request) error {
	to, err := s.treeSize(r, "to")
	if err != nil {
		return err
	}
	from, err := queryUint(r, "from")
	if err != nil {
		return err
	}
	if from == 0 || from > to {
		return &Error{Code: CodeInvalidRequest, Field: "from", Message: "must be between 1 and to"}
	}
	p, err := s.l.Tree().ConsistencyProof(int64(from), int64(to))
	if err != nil {
		return errorf(CodeInvalidRequest, err.Error())
	}
	writeJSON(w, http.StatusOK, map[string]any{"from": from, "to": to, "hashes": b64s(p)})
	return nil
}

// SubjectState is the answer of GET /v1/subjects/{subject}/state.
type SubjectState struct {
	Subject         string           `json:"subject"` // the pseudonym
	At              time.Time        `json:"at"`
	Registered      bool             `json:"registered"`
	Residence       string           `json:"residence,omitempty"`
	Erased          bool             `json:"erased"`
	KeyDestroyed    bool             `json:"key_destroyed"`
	ConsentsInForce []ConsentView    `json:"consents_in_force"`
	Consents        []ConsentView    `json:"consents"`
	Holdings        []*state.Holding `json:"holdings"`
	ErasedCats      []string         `json:"erased_categories"`
	Transfers       []state.Transfer `json:"transfers"`
	OpenRequests    []RightsView     `json:"open_requests"`
	Requests        []RightsView     `json:"requests"`
	LastSeq         uint64           `json:"last_seq"`
}

// ConsentView is a consent with what remains of it after withdrawals.
type ConsentView struct {
	state.Consent
	Status string `json:"status"` // in_force, withdrawn, expired
}

func (s *Server) handleState(w http.ResponseWriter, r *http.Request) error {
	at, err := queryTime(r, "at")
	if err != nil {
		return err
	}
	p := s.l.Pseudonym(r.PathValue("subject"))
	var sub *state.Subject
	if !r.URL.Query().Has("at") {
		at = s.l.Now().UTC()
		sub = s.l.View().Subject(p)
		if sub == nil {
			sub = state.NewSubject(p)
		}
	} else if sub, err = s.l.SubjectAt(r.Context(), p, at); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.stateView(sub, at))
	return nil
}

func (s *Server) stateView(sub *state.Subject, at time.Time) SubjectState {
	out := SubjectState{
		Subject: sub.Pseudonym, At: at, Registered: sub.Registered, Residence: sub.Residence,
		Erased: sub.Erased, KeyDestroyed: sub.KeyDestroyed, ErasedCats: sub.ErasedCategories,
		Transfers: sub.Transfers, LastSeq: sub.LastSeq,
		ConsentsInForce: []ConsentView{}, Consents: []ConsentView{}, Holdings: []*state.Holding{},
		OpenRequests: []RightsView{}, Requests: []RightsView{},
	}
	for _, c := range sub.Consents {
		v := ConsentView{Consent: *c, Status: "in_force"}
		switch {
		case c.Withdrawn:
			v.Status = "withdrawn"
		case c.Expires != nil && !c.Expires.After(at):
			v.Status = "expired"
		}
		out.Consents = append(out.Consents, v)
		if v.Status == "in_force" {
			eff := v
			ws := c.WithdrawnScope
			eff.Purposes = minus(c.Purposes, ws.Purposes)
			eff.Categories = minus(c.Categories, ws.Categories)
			eff.Destinations = minus(c.Destinations, ws.Destinations)
			eff.Cookies = minus(c.Cookies, ws.Cookies)
			out.ConsentsInForce = append(out.ConsentsInForce, eff)
		}
	}
	cats := make([]string, 0, len(sub.Holdings))
	for c := range sub.Holdings {
		cats = append(cats, c)
	}
	sort.Strings(cats)
	for _, c := range cats {
		out.Holdings = append(out.Holdings, sub.Holdings[c])
	}
	for _, q := range sub.Requests {
		v := s.rightsView(sub, q, at)
		out.Requests = append(out.Requests, v)
		if q.Status == "open" {
			out.OpenRequests = append(out.OpenRequests, v)
		}
	}
	return out
}

func minus(a, b []string) []string {
	out := []string{}
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// RightsView is a rights request with its deadline.
type RightsView struct {
	Subject string `json:"subject"`
	state.Request
	Deadline time.Time `json:"deadline"`
	Overdue  bool      `json:"overdue"`
}

func (s *Server) rightsView(sub *state.Subject, q *state.Request, now time.Time) RightsView {
	d := q.RequestedAt.Add(s.l.Policy().Active().RightsDeadline(q.Right, sub.Residence))
	return RightsView{Subject: sub.Pseudonym, Request: *q, Deadline: d, Overdue: q.Status == "open" && now.After(d)}
}

// rights lists requests by status: open, overdue, closed or all.
func (s *Server) rights(status string) []RightsView {
	now := s.l.Now()
	out := []RightsView{}
	s.l.View().EachSubject(func(sub *state.Subject) {
		for _, q := range sub.Requests {
			v := s.rightsView(sub, q, now)
			switch status {
			case "open":
				if q.Status != "open" {
					continue
				}
			case "overdue":
				if !v.Overdue {
					continue
				}
			case "closed":
				if q.Status == "open" {
					continue
				}
			}
			out = append(out, v)
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}

func (s *Server) handleRights(w http.ResponseWriter, r *http.Request) error {
	st := r.URL.Query().Get("status")
	switch st {
	case "":
		st = "all"
	case "all", "open", "overdue", "closed":
	default:
		return &Error{Code: CodeInvalidRequest, Field: "status", Message: "must be open, overdue, closed or all"}
	}
	writeJSON(w, http.StatusOK, map[string]any{"requests": s.rights(st)})
	return nil
}

func (s *Server) handleTransfers(w http.ResponseWriter, r *http.Request) error {
	from, err := queryTime(r, "from")
	if err != nil {
		return err
	}
	to, err := queryTime(r, "to")
	if err != nil {
		return err
	}
	dest := r.URL.Query().Get("destination")
	if dest != "" && !event.ValidRegion(dest) {
		return &Error{Code: CodeInvalidRequest, Field: "destination", Message: "must be an ISO 3166-1 alpha-2 region"}
	}
	// The register is filled by the follower: wait until it has read every
	// record committed so far, so that an attempt just answered (here or
	// by another process) is in it.
	if info, err := s.l.Stream().Info(r.Context()); err != nil {
		return fmt.Errorf("%w: %v", ledger.ErrUnavailable, err)
	} else if err := s.l.WaitApplied(r.Context(), info.State.LastSeq); err != nil {
		return err
	}
	entries, err := s.l.View().Register(func(e *state.RegisterEntry) bool {
		return (from.IsZero() || !e.Time.Before(from)) && (to.IsZero() || e.Time.Before(to)) && (dest == "" || e.To == dest)
	})
	if err != nil {
		return fmt.Errorf("%w: %v", ledger.ErrUnavailable, err)
	}
	if wants(r, "csv") {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"seq", "time", "subject", "kind", "transfer_id", "recipient", "from_region", "to_region", "mechanism", "assessment_ref", "categories", "purpose", "allowed", "reasons", "basis", "transfer_ground", "policy_revision"})
		for _, e := range entries {
			_ = cw.Write([]string{strconv.FormatUint(e.Seq, 10), e.Time.Format(time.RFC3339), e.Subject, e.Kind, e.TransferID, e.Recipient,
				e.From, e.To, e.Mechanism, e.AssessmentRef, strings.Join(e.Categories, ";"), e.Purpose, strconv.FormatBool(e.Allowed), strings.Join(e.Reasons, ";"),
				e.Basis, e.TransferGround, e.PolicyRevision})
		}
		cw.Flush()
		return cw.Error()
	}
	writeJSON(w, http.StatusOK, map[string]any{"transfers": entries})
	return nil
}

// CurrentValue is the current value of one personal field in an export.
type CurrentValue struct {
	Value  any    `json:"value"`
	Seq    uint64 `json:"seq"`
	Source string `json:"source_type"`
}

// Export is the portability document of GET /v1/subjects/{subject}/export
// (docs/schemas/export.schema.json).
type Export struct {
	Schema        string                  `json:"schema"`
	Subject       string                  `json:"subject"`
	Pseudonym     string                  `json:"pseudonym"`
	ExportedAt    time.Time               `json:"exported_at"`
	Erased        bool                    `json:"erased"`
	State         SubjectState            `json:"state"`
	CurrentValues map[string]CurrentValue `json:"current_values"`
	ErasedFields  []string                `json:"erased_fields"`
	Consents      []ledger.ExportEvent    `json:"consent_history"`
	Collections   []ledger.ExportEvent    `json:"collections"`
	Corrections   []ledger.ExportEvent    `json:"corrections"`
	Uses          []ledger.ExportEvent    `json:"uses"`
	Sharings      []ledger.ExportEvent    `json:"sharings"`
	Transfers     []ledger.ExportEvent    `json:"transfers"`
	Requests      []ledger.ExportEvent    `json:"rights_requests"`
	Events        []ledger.ExportEvent    `json:"events"`
}

func (s *Server) handleExport(w http.ResponseWriter, r *http.Request) error {
	subject := r.PathValue("subject")
	p := s.l.Pseudonym(subject)
	events, sub, err := s.l.Export(r.Context(), p)
	if err != nil {
		return err
	}
	if len(events) == 0 {
		return errorf(CodeNotFound, "no events for this subject")
	}
	now := s.l.Now().UTC()
	out := Export{
		Schema: "https://custos.dev/schemas/export.schema.json", Subject: subject, Pseudonym: p, ExportedAt: now,
		Erased: sub.Erased, State: s.stateView(sub, now), CurrentValues: map[string]CurrentValue{}, ErasedFields: []string{},
		Consents: []ledger.ExportEvent{}, Collections: []ledger.ExportEvent{}, Corrections: []ledger.ExportEvent{},
		Uses: []ledger.ExportEvent{}, Sharings: []ledger.ExportEvent{}, Transfers: []ledger.ExportEvent{},
		Requests: []ledger.ExportEvent{}, Events: events,
	}
	erased := map[string]bool{}
	for _, e := range events {
		switch e.Type {
		case "privacy.consent.granted", "privacy.consent.withdrawn":
			out.Consents = append(out.Consents, e)
		case "privacy.data.collected", "privacy.data.corrected":
			if e.Type == "privacy.data.collected" {
				out.Collections = append(out.Collections, e)
			} else {
				out.Corrections = append(out.Corrections, e)
			}
			// Later values replace earlier ones: a correction makes its
			// values the current ones, the history keeps both.
			var d struct {
				Fields map[string]any `json:"fields"`
			}
			_ = json.Unmarshal(e.Data, &d)
			for name := range d.Fields {
				v, ok := e.Personal["fields."+name]
				if e.Erased || !ok {
					delete(out.CurrentValues, name)
					erased[name] = true
					continue
				}
				out.CurrentValues[name] = CurrentValue{Value: v, Seq: e.Seq, Source: e.Type}
				delete(erased, name)
			}
		case "privacy.data.used":
			out.Uses = append(out.Uses, e)
		case "privacy.data.shared":
			out.Sharings = append(out.Sharings, e)
		case "privacy.data.transferred":
			out.Transfers = append(out.Transfers, e)
		case "privacy.rights.requested", "privacy.rights.completed":
			out.Requests = append(out.Requests, e)
		}
	}
	for name := range erased {
		out.ErasedFields = append(out.ErasedFields, name)
	}
	sort.Strings(out.ErasedFields)
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handlePolicy(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]any{"policy_revision": s.l.Policy().Active().Revision()})
	return nil
}

// handlePolicyReload loads and activates the policy directory at an
// admin's request; the activation on the ledger names the token.
func (s *Server) handlePolicyReload(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Policies == nil {
		return &Error{Code: CodeInvalidRequest, Field: "policies", Message: "this server decides with the built-in policy set; start it with --policies DIR to reload one"}
	}
	ctx, cancel := appendContext(r)
	defer cancel()
	rev, activated, err := s.cfg.Policies.ReloadPolicy(ctx, "token:"+tokenFrom(r).ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"policy_revision": rev, "activated": activated})
	return nil
}

// handlePolicyInstall activates the OPA bundle in the request body; the
// activation on the ledger names the token and the bundle's signer.
func (s *Server) handlePolicyInstall(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Policies == nil {
		return &Error{Code: CodeInvalidRequest, Field: "policies", Message: "this server decides with the built-in policy set; start it with --policies FILE.tar.gz to install bundles"}
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, policy.MaxBundleBytes))
	if err != nil {
		return err
	}
	ctx, cancel := appendContext(r)
	defer cancel()
	rev, activated, err := s.cfg.Policies.InstallBundle(ctx, b, "token:"+tokenFrom(r).ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"policy_revision": rev, "activated": activated})
	return nil
}

// handleWhatIf re-decides the recorded history under the candidate set in
// the request body, an OPA bundle, and answers the report
// (docs/policies.md, "What if"). Nothing is appended or activated.
func (s *Server) handleWhatIf(w http.ResponseWriter, r *http.Request) error {
	var rng whatif.Range
	var err error
	if rng.FromSeq, err = queryUint(r, "from_seq"); err != nil {
		return err
	}
	if rng.ToSeq, err = queryUint(r, "to_seq"); err != nil {
		return err
	}
	if rng.Since, err = queryTime(r, "since"); err != nil {
		return err
	}
	if rng.Until, err = queryTime(r, "until"); err != nil {
		return err
	}
	rng.Type = r.URL.Query().Get("type")
	body := http.MaxBytesReader(w, r.Body, policy.MaxBundleBytes)
	candidate, _, err := policy.LoadBundle(r.Context(), body, nil)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		return &Error{Code: CodeInvalidRequest, Field: "body", Message: err.Error()}
	}
	cascade := r.URL.Query().Get("cascade") == "true"
	rep, err := whatif.Run(r.Context(), ledger.NewReader(s.l.JetStream()).Source(), candidate, whatif.Options{Range: rng, Cascade: cascade})
	if err != nil {
		return fmt.Errorf("%w: %v", ledger.ErrUnavailable, err)
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

// handleConsents answers a subject's consents as ISO/IEC TS 27560 consent
// records in JSON-LD (docs/vocabulary.md, "Consent records").
func (s *Server) handleConsents(w http.ResponseWriter, r *http.Request) error {
	if f := r.URL.Query().Get("format"); f != "" && f != "iso27560" {
		return &Error{Code: CodeInvalidRequest, Field: "format", Message: "must be iso27560"}
	}
	doc, err := s.l.ConsentRecords(r.Context(), s.l.Pseudonym(r.PathValue("subject")))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/ld+json")
	w.Header().Set("Link", `<`+consentrecord.ContextURL+`>; rel="http://www.w3.org/ns/json-ld#context"`)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(doc)
}

// handleContext serves the JSON-LD context of the consent records, so that
// a JSON-LD processor can resolve it from Custos itself.
func handleContext(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/ld+json")
	_, _ = w.Write(consentrecord.Context())
}
