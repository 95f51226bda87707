package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"custos.dev/ledger"
	"custos.dev/ledger/event"
	"custos.dev/ledger/policy"
	"custos.dev/services/auth"
)

// Every lower-layer error becomes one API error code, and each code one
// status: the one place where Go errors become HTTP.
func TestToAPIError(t *testing.T) {
	for _, tc := range []struct {
		err    error
		code   string
		status int
	}{
		{&event.FieldError{Field: "data.purpose", Message: "not a known purpose"}, CodeInvalidEvent, http.StatusBadRequest},
		{&ledger.DeniedError{Decision: policy.Decision{Reasons: []policy.Reason{{Code: "X", Message: "m"}}}, Seq: 7}, CodePolicyDenied, http.StatusForbidden},
		{&http.MaxBytesError{Limit: 10}, CodeTooLarge, http.StatusRequestEntityTooLarge},
		{fmt.Errorf("wrapped: %w", ledger.ErrConflict), CodeConflict, http.StatusConflict},
		{ledger.ErrNotFound, CodeNotFound, http.StatusNotFound},
		{fmt.Errorf("x: %w", ledger.ErrUnavailable), CodeUnavailable, http.StatusServiceUnavailable},
		{ledger.ErrClosed, CodeUnavailable, http.StatusServiceUnavailable},
		{&ledger.MisplacedError{Seq: 3, Problem: "p"}, CodeUnavailable, http.StatusServiceUnavailable},
		{context.DeadlineExceeded, CodeUnavailable, http.StatusServiceUnavailable},
		{context.Canceled, CodeUnavailable, http.StatusServiceUnavailable},
		{auth.ErrNoToken, CodeUnauthorized, http.StatusUnauthorized},
		{auth.ErrBadToken, CodeUnauthorized, http.StatusUnauthorized},
		{auth.ErrInvalidRole, CodeInvalidRequest, http.StatusBadRequest},
		{errors.New("something unforeseen"), CodeInternal, http.StatusInternalServerError},
	} {
		e := toAPIError(tc.err)
		if e.Code != tc.code || status(e.Code) != tc.status {
			t.Errorf("%v: %s (%d), want %s (%d)", tc.err, e.Code, status(e.Code), tc.code, tc.status)
		}
	}
	d := toAPIError(&ledger.DeniedError{Decision: policy.Decision{Reasons: []policy.Reason{{Code: "NO_SEPARATE_CONSENT", Message: "m"}}}, Seq: 9})
	if d.Seq != 9 || d.Decision == nil || d.Message != "NO_SEPARATE_CONSENT: m" {
		t.Errorf("a denial keeps its sequence and decision: %+v", d)
	}
	if toAPIError(errors.New("user said li.wei@example.cn")).Message != "internal error" {
		t.Error("an unforeseen error's text reached the answer")
	}
}

// Only the Bearer scheme carries a token; its name is case-insensitive.
func TestBearer(t *testing.T) {
	for h, want := range map[string]string{
		"Bearer cst_a_b": "cst_a_b", "bearer cst_a_b": "cst_a_b", "BEARER  cst_a_b ": "cst_a_b",
		"cst_a_b": "", "Basic dXNlcg==": "", "Bearer": "", "": "", "Token cst_a_b": "",
	} {
		if got := bearer(h); got != want {
			t.Errorf("bearer(%q) = %q, want %q", h, got, want)
		}
	}
}
