package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"custos.dev/ledger"
	"custos.dev/ledger/event"
	"custos.dev/ledger/policy"
	"custos.dev/services/auth"
)

// Media types of CloudEvents over HTTP.
const (
	mediaStructured = "application/cloudevents+json"
	mediaBatch      = "application/cloudevents-batch+json"
	mediaJSON       = "application/json"
)

// Result is one event's outcome in a batch answer.
type Result struct {
	Status   int              `json:"status"`
	Seq      uint64           `json:"seq,omitempty"`
	LeafHash string           `json:"leaf_hash,omitempty"`
	Decision *policy.Decision `json:"decision,omitempty"`
	Error    *Error           `json:"error,omitempty"`
}

// readBody reads a request body within MaxBody.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, err
		}
		return nil, errorf(CodeInvalidRequest, "could not read the request body")
	}
	return b, nil
}

// decodeRequest turns a request into events: one (structured or binary
// mode) or a batch. For a batch, each raw entry is decoded separately so
// that one bad event does not sink the others.
func (s *Server) decodeRequest(w http.ResponseWriter, r *http.Request) (single *event.Event, batch []json.RawMessage, err error) {
	ct := r.Header.Get("Content-Type")
	media, _, perr := mime.ParseMediaType(ct)
	if perr != nil || ct == "" {
		return nil, nil, errorf(CodeUnsupportedMedia, "Content-Type must be application/cloudevents+json, application/cloudevents-batch+json or application/json")
	}
	switch media {
	case mediaStructured, mediaBatch, mediaJSON:
	default:
		return nil, nil, errorf(CodeUnsupportedMedia, "Content-Type "+media+" is not accepted; use application/cloudevents+json, application/cloudevents-batch+json or application/json")
	}
	body, err := readBody(w, r)
	if err != nil {
		return nil, nil, err
	}
	now := s.l.Now()
	switch {
	case media == mediaBatch:
		batch, err := event.DecodeBatch(body)
		return nil, batch, err
	case media == mediaJSON && r.Header.Get("Ce-Specversion") != "":
		e, err := event.DecodeBinary(r.Header, body, now)
		return e, nil, err
	default:
		e, err := event.Decode(body, now)
		return e, nil, err
	}
}

// checkSource enforces that an emitter only speaks for its own source.
func checkSource(t *auth.Token, e *event.Event) error {
	if t.Role == auth.RoleEmitter && e.Source != t.Source {
		return &Error{Code: CodeForbidden, Field: "source", Message: "source does not match the token's source"}
	}
	return nil
}

func (s *Server) handleEmit(w http.ResponseWriter, r *http.Request) error {
	single, batch, err := s.decodeRequest(w, r)
	if err != nil {
		return err
	}
	t := tokenFrom(r)
	if single != nil {
		if err := checkSource(t, single); err != nil {
			return err
		}
		ctx, cancel := appendContext(r)
		defer cancel()
		rc, err := s.l.Append(ctx, single)
		if err != nil {
			return err
		}
		code := http.StatusCreated
		if rc.Duplicate {
			code = http.StatusOK
		}
		writeJSON(w, code, rc)
		return nil
	}
	results := make([]Result, 0, len(batch))
	ctx, cancel := appendContext(r)
	defer cancel()
	for _, raw := range batch {
		results = append(results, s.appendOne(ctx, t, raw))
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": results})
	return nil
}

// appendTimeout bounds one request's decisions and appends.
const appendTimeout = 30 * time.Second

// appendContext is the context events are decided and appended on: the
// client's departure does not cancel it, so a decision is never made on a
// cancelled context (which would record a spurious POLICY_ERROR denial) and
// an append that started finishes; the answer then goes nowhere, and a
// re-send is answered from the ledger as a duplicate.
func appendContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.Context()), appendTimeout)
}

func (s *Server) appendOne(ctx context.Context, t *auth.Token, raw []byte) Result {
	e, err := event.Decode(raw, s.l.Now())
	if err == nil {
		err = checkSource(t, e)
	}
	var rc *ledger.Receipt
	if err == nil {
		rc, err = s.l.Append(ctx, e)
	}
	if err != nil {
		ae := toAPIError(err)
		// A batch answers 200 with a status per entry, so writeError does
		// not count these.
		s.metrics.errors.WithLabelValues(ae.Code).Inc()
		return Result{Status: status(ae.Code), Error: ae, Decision: ae.Decision, Seq: ae.Seq}
	}
	res := Result{Status: http.StatusCreated, Seq: rc.Seq, LeafHash: rc.LeafHash, Decision: &rc.Decision}
	if rc.Duplicate {
		res.Status = http.StatusOK
	}
	return res
}

func (s *Server) handleDecide(w http.ResponseWriter, r *http.Request) error {
	single, batch, err := s.decodeRequest(w, r)
	if err != nil {
		return err
	}
	if single == nil {
		if len(batch) != 1 {
			return errorf(CodeInvalidRequest, "decisions take one event")
		}
		if single, err = event.Decode(batch[0], s.l.Now()); err != nil {
			return err
		}
	}
	if err := checkSource(tokenFrom(r), single); err != nil {
		return err
	}
	ctx, cancel := appendContext(r)
	defer cancel()
	d, err := s.l.Decide(ctx, single)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

// wants reports whether a client asked for the given format, by ?format=
// or by its Accept header.
func wants(r *http.Request, format string) bool {
	if f := r.URL.Query().Get("format"); f != "" {
		return f == format
	}
	return strings.Contains(r.Header.Get("Accept"), format)
}
