package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"custos.dev/services/auth"
)

// TokenRequest is the body of POST /v1/tokens.
type TokenRequest struct {
	Role   string `json:"role"`
	Source string `json:"source,omitempty"`
	Note   string `json:"note,omitempty"`
}

// TokenCreated is the answer of POST /v1/tokens; Token is shown only here.
type TokenCreated struct {
	ID     string `json:"id"`
	Token  string `json:"token"`
	Role   string `json:"role"`
	Source string `json:"source"` // "" for auditor and admin tokens
}

func (s *Server) handleTokenCreate(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var req TokenRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return errorf(CodeInvalidRequest, "body must be {\"role\", \"source\"}")
	}
	// One object and nothing after it: a body with more is not the
	// request the admin meant, so nothing is created.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errorf(CodeInvalidRequest, "body must be one {\"role\", \"source\"} object")
	}
	t, secret, err := s.tokens.Create(r.Context(), req.Role, req.Source, req.Note)
	if err != nil {
		return err
	}
	s.log.Info("token created", "token_id", t.ID, "role", t.Role, "by", tokenFrom(r).ID)
	writeJSON(w, http.StatusCreated, TokenCreated{ID: t.ID, Token: secret, Role: t.Role, Source: t.Source})
	return nil
}

func (s *Server) handleTokenList(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]any{"tokens": s.tokens.List()})
	return nil
}

func (s *Server) handleTokenRevoke(w http.ResponseWriter, r *http.Request) error {
	t, err := s.tokens.Revoke(r.Context(), r.PathValue("id"))
	if err == auth.ErrBadToken {
		return errorf(CodeNotFound, "no such token")
	}
	if err != nil {
		return err
	}
	s.log.Info("token revoked", "token_id", t.ID, "by", tokenFrom(r).ID)
	writeJSON(w, http.StatusOK, t)
	return nil
}
