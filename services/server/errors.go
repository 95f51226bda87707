package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"custos.dev/ledger"
	"custos.dev/ledger/event"
	"custos.dev/ledger/policy"
	"custos.dev/services/auth"
)

// Error codes of the API. Each maps to exactly one HTTP status in status().
const (
	CodeInvalidEvent     = "invalid_event"
	CodeInvalidRequest   = "invalid_request"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodePolicyDenied     = "policy_denied"
	CodeNotFound         = "not_found"
	CodeMethod           = "method_not_allowed"
	CodeConflict         = "duplicate_id_conflict"
	CodeTooLarge         = "payload_too_large"
	CodeUnsupportedMedia = "unsupported_media_type"
	CodeRateLimited      = "rate_limited"
	CodeUnavailable      = "unavailable"
	CodeInternal         = "internal"
)

func status(code string) int {
	switch code {
	case CodeInvalidEvent, CodeInvalidRequest:
		return http.StatusBadRequest
	case CodeUnauthorized:
		return http.StatusUnauthorized
	case CodeForbidden, CodePolicyDenied:
		return http.StatusForbidden
	case CodeNotFound:
		return http.StatusNotFound
	case CodeMethod:
		return http.StatusMethodNotAllowed
	case CodeConflict:
		return http.StatusConflict
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeUnsupportedMedia:
		return http.StatusUnsupportedMediaType
	case CodeRateLimited:
		return http.StatusTooManyRequests
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// Error is an API error. Its message never carries a personal value.
type Error struct {
	Code     string           `json:"code"`
	Field    string           `json:"field,omitempty"`
	Message  string           `json:"message"`
	Decision *policy.Decision `json:"-"`
	Seq      uint64           `json:"-"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// MarshalJSON always writes field for invalid_event, empty when the body
// as a whole is wrong (not JSON, not an object, too deep), so that clients
// can rely on the member being there (docs/schemas/).
func (e *Error) MarshalJSON() ([]byte, error) {
	type plain Error
	if e.Code != CodeInvalidEvent {
		return json.Marshal((*plain)(e))
	}
	return json.Marshal(struct {
		Code    string `json:"code"`
		Field   string `json:"field"`
		Message string `json:"message"`
	}{e.Code, e.Field, e.Message})
}

func errorf(code, msg string) *Error { return &Error{Code: code, Message: msg} }

// ErrorBody is the JSON body of every error (docs/openapi.yaml).
type ErrorBody struct {
	Error    *Error           `json:"error"`
	Decision *policy.Decision `json:"decision,omitempty"`
	Seq      uint64           `json:"seq,omitempty"`
}

// toAPIError maps any error of the lower layers to an API error. It is the
// one place where Go errors become HTTP semantics.
func toAPIError(err error) *Error {
	var apiErr *Error
	var fe *event.FieldError
	var denied *ledger.DeniedError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &apiErr):
		return apiErr
	case errors.As(err, &fe):
		return &Error{Code: CodeInvalidEvent, Field: fe.Field, Message: fe.Message}
	case errors.As(err, &denied):
		d := denied.Decision
		msg := "denied by policy"
		if len(d.Reasons) > 0 {
			msg = d.Reasons[0].Code + ": " + d.Reasons[0].Message
		}
		return &Error{Code: CodePolicyDenied, Message: msg, Decision: &d, Seq: denied.Seq}
	case errors.As(err, &tooBig):
		return errorf(CodeTooLarge, "request body exceeds "+strconv.FormatInt(tooBig.Limit, 10)+" bytes")
	case errors.Is(err, ledger.ErrConflict):
		return errorf(CodeConflict, "an event with this source and id was recorded with different content")
	case errors.Is(err, ledger.ErrNotFound):
		return errorf(CodeNotFound, "not found")
	case errors.Is(err, ledger.ErrUnavailable), errors.Is(err, ledger.ErrClosed):
		return errorf(CodeUnavailable, err.Error())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return errorf(CodeUnavailable, "the request took too long; retry it (a re-sent event is answered as a duplicate if it was recorded)")
	case errors.Is(err, ledger.ErrIntegrity):
		return errorf(CodeUnavailable, "ledger integrity failure: appends are stopped; run custos verify")
	case errors.Is(err, auth.ErrNoToken):
		return errorf(CodeUnauthorized, "missing bearer token")
	case errors.Is(err, auth.ErrBadToken):
		return errorf(CodeUnauthorized, "invalid or revoked token")
	case errors.Is(err, auth.ErrInvalidRole), errors.Is(err, auth.ErrSourceNeeded):
		return &Error{Code: CodeInvalidRequest, Field: "role", Message: err.Error()}
	}
	return errorf(CodeInternal, "internal error")
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := toAPIError(err)
	// Log the route pattern, never the path: /v1/subjects/{subject}/...
	// carries a subject identifier, and an unknown path may carry anything.
	route := r.Pattern
	if route == "" {
		route = "unmatched"
	}
	if e.Code == CodeInternal {
		// Internal errors can wrap anything; log the kind, not the text
		// of user input (which the lower layers never put in errors).
		s.log.Error("request failed", "method", r.Method, "route", route, "err", err)
	} else {
		s.log.Debug("request refused", "method", r.Method, "route", route, "code", e.Code, "field", e.Field)
	}
	s.metrics.errors.WithLabelValues(e.Code).Inc()
	switch e.Code {
	case CodeRateLimited:
		w.Header().Set("Retry-After", "1")
	case CodeUnavailable:
		w.Header().Set("Retry-After", "2")
	}
	writeJSON(w, status(e.Code), ErrorBody{Error: e, Decision: e.Decision, Seq: e.Seq})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		slog.Debug("write response", "err", err)
	}
}
