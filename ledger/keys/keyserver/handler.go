package keyserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// maxRequestSize is Vault's default max_request_size.
const maxRequestSize = 32 << 20

// operation is Vault's logical operation, derived from the HTTP method.
type operation int

const (
	opRead operation = iota
	opList
	opUpdate
	opDelete
)

// request is a decoded API call.
type request struct {
	op   operation
	path string // after /v1/
	data fields
}

// response is what a handler answers. A nil *response is 204 No Content.
type response struct {
	status    int // 0 means 200
	data      map[string]any
	warnings  []string
	mountType string
	raw       any // when set, written as the whole body, without the envelope
}

// apiError is an error with its own status and messages; any other error
// from a handler is a userError (400) or an internal fault (500).
type apiError struct {
	status int
	msgs   []string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d: %s", e.status, strings.Join(e.msgs, "; ")) }

// Vault's multierror rendering of its sentinel errors.
func vaultSentinel(msg string) string { return "1 error occurred:\n\t* " + msg + "\n\n" }

var (
	errNotFound       = &apiError{status: http.StatusNotFound, msgs: []string{}}
	errUnsupportedOp  = &apiError{status: http.StatusMethodNotAllowed, msgs: []string{vaultSentinel("unsupported operation")}}
	errUnsupportedPth = &apiError{status: http.StatusNotFound, msgs: []string{vaultSentinel("unsupported path")}}
	errDenied         = &apiError{status: http.StatusForbidden, msgs: []string{"permission denied"}}
)

func noRoute(rel string) error {
	return &apiError{status: http.StatusNotFound, msgs: []string{fmt.Sprintf("no handler for route %q. route entry not found.", rel)}}
}

// envelope is Vault's response body.
type envelope struct {
	RequestID     string         `json:"request_id"`
	LeaseID       string         `json:"lease_id"`
	Renewable     bool           `json:"renewable"`
	LeaseDuration int            `json:"lease_duration"`
	Data          map[string]any `json:"data"`
	WrapInfo      any            `json:"wrap_info"`
	Warnings      []string       `json:"warnings"`
	Auth          any            `json:"auth"`
	MountType     string         `json:"mount_type"`
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	start := time.Now()
	status := s.handle(w, r)
	// Paths name keys, which are pseudonyms; bodies, queries and headers,
	// which carry plaintexts and tokens, are never logged.
	s.log.Debug("key server request", "method", r.Method, "path", r.URL.Path, "status", status, "duration", time.Since(start))
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) int {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return writeErrors(w, http.StatusServiceUnavailable, []string{"key server is shut down"})
	}
	rel, ok := strings.CutPrefix(r.URL.Path, "/v1/")
	if !ok {
		return writeErrors(w, http.StatusNotFound, []string{})
	}

	// Health and seal status answer without a token, as in Vault.
	if (rel == "sys/health" || rel == "sys/seal-status") && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		resp := s.sysHealth()
		if rel == "sys/seal-status" {
			resp = s.sysSealStatus()
		}
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusOK)
			return http.StatusOK
		}
		return s.write(w, resp, nil)
	}

	op, ok := methodOperation(r)
	if !ok {
		return writeErrors(w, http.StatusMethodNotAllowed, []string{})
	}
	if !s.authorized(requestToken(r)) {
		return writeErrors(w, errDenied.status, errDenied.msgs)
	}
	data, err := readData(w, r, op)
	if err != nil {
		return s.write(w, nil, err)
	}
	req := &request{op: op, path: rel, data: data}
	resp, err := s.route(r.Context(), req)
	return s.write(w, resp, err)
}

func methodOperation(r *http.Request) (operation, bool) {
	switch r.Method {
	case http.MethodGet:
		if l, err := strconv.ParseBool(r.URL.Query().Get("list")); err == nil && l {
			return opList, true
		}
		return opRead, true
	case "LIST":
		return opList, true
	case http.MethodPost, http.MethodPut:
		return opUpdate, true
	case http.MethodDelete:
		return opDelete, true
	}
	return 0, false
}

// requestToken reads X-Vault-Token, or a bearer token as Vault also accepts.
func requestToken(r *http.Request) string {
	if t := r.Header.Get("X-Vault-Token"); t != "" {
		return t
	}
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

// readData decodes the JSON body of writes, or the query of reads, into
// request data as Vault does (numbers kept as json.Number).
func readData(w http.ResponseWriter, r *http.Request, op operation) (fields, error) {
	data := fields{}
	if op != opUpdate {
		for k, v := range r.URL.Query() {
			if k != "list" && len(v) > 0 {
				data[k] = v[0]
			}
		}
		return data, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestSize))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &apiError{status: http.StatusRequestEntityTooLarge, msgs: []string{"http: request body too large"}}
		}
		return nil, userError("failed to read request body")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return data, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	// The messages below never quote the body: it may hold plaintexts.
	if err := dec.Decode(&data); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return nil, userError(fmt.Sprintf("failed to parse JSON input: invalid JSON at offset %d", syn.Offset))
		case errors.As(err, &typ):
			return nil, userError("failed to parse JSON input: the body must be a JSON object")
		}
		return nil, userError("failed to parse JSON input: malformed JSON")
	}
	if dec.More() {
		return nil, userError("failed to parse JSON input: unexpected data after the JSON object")
	}
	if data == nil {
		data = fields{}
	}
	return data, nil
}

// write renders a handler's outcome as Vault would, returning the status.
func (s *Server) write(w http.ResponseWriter, resp *response, err error) int {
	if err != nil {
		var ae *apiError
		var ue userError
		switch {
		case errors.As(err, &ae):
			return writeErrors(w, ae.status, ae.msgs)
		case errors.As(err, &ue):
			return writeErrors(w, http.StatusBadRequest, []string{ue.Error()})
		}
		s.log.Error("key server internal error", "err", err)
		return writeErrors(w, http.StatusInternalServerError, []string{vaultSentinel(err.Error())})
	}
	if resp == nil {
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
		return http.StatusNoContent
	}
	status := resp.status
	if status == 0 {
		status = http.StatusOK
	}
	var body any = resp.raw
	if body == nil {
		sort.Strings(resp.warnings)
		body = envelope{
			RequestID: newUUID(),
			Data:      resp.data,
			Warnings:  resp.warnings,
			MountType: resp.mountType,
		}
	}
	return writeJSON(w, status, body)
}

func writeErrors(w http.ResponseWriter, status int, msgs []string) int {
	if msgs == nil {
		msgs = []string{}
	}
	return writeJSON(w, status, map[string][]string{"errors": msgs})
}

func writeJSON(w http.ResponseWriter, status int, body any) int {
	b, err := json.Marshal(body)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"errors":["failed to encode the response"]}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
	return status
}

// route dispatches a request by path.
func (s *Server) route(ctx context.Context, req *request) (*response, error) {
	rel := req.path
	switch {
	case rel == "sys/mounts":
		if req.op != opRead {
			return nil, errUnsupportedOp
		}
		return s.sysMountsList(), nil
	case strings.HasPrefix(rel, "sys/mounts/"):
		return s.sysMount(req, strings.TrimPrefix(rel, "sys/mounts/"))
	case rel == "auth/token/lookup-self":
		if req.op != opRead && req.op != opUpdate {
			return nil, errUnsupportedOp
		}
		return s.lookupSelf(), nil
	case strings.HasPrefix(rel, "sys/") || strings.HasPrefix(rel, "auth/token/"):
		return nil, errUnsupportedPth
	}
	m, rest := s.mountFor(rel)
	if m == nil {
		return nil, noRoute(rel)
	}
	resp, err := s.transit(ctx, m, rest, req)
	if resp != nil && resp.raw == nil {
		resp.mountType = "transit"
	}
	return resp, err
}
