// Package client is the Go client of Custos's HTTP API (docs/openapi.yaml): platform
// services publish CloudEvents with it, auditors replay and verify with it.
// It depends on nothing of Custos's server side.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
)

// Client talks to one Custos server with one token.
type Client struct {
	BaseURL string
	Token   string
	HTTP    *http.Client
}

// New returns a client for the server at base (e.g. http://127.0.0.1:8080).
func New(base, token string) *Client {
	return &Client{BaseURL: strings.TrimRight(base, "/"), Token: token, HTTP: &http.Client{Timeout: 60 * time.Second}}
}

// Decision is a policy decision (docs/policies.md).
type Decision struct {
	Allow          bool     `json:"allow"`
	Reasons        []Reason `json:"reasons"`
	Obligations    []any    `json:"obligations"`
	PolicyRevision string   `json:"policy_revision"`
}

// Reason is one reason code.
type Reason struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Receipt acknowledges an appended event.
type Receipt struct {
	Seq      uint64   `json:"seq"`
	LeafHash string   `json:"leaf_hash"`
	Decision Decision `json:"decision"`
}

// APIError is an error answer of the API.
type APIError struct {
	Status   int       `json:"status"`
	Code     string    `json:"code"`
	Field    string    `json:"field,omitempty"`
	Message  string    `json:"message"`
	Decision *Decision `json:"-"`
	Seq      uint64    `json:"-"`
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("%d %s", e.Status, e.Code)
	if e.Field != "" {
		s += " (" + e.Field + ")"
	}
	return s + ": " + e.Message
}

// Do sends a request and returns the response of a 2xx answer; any other
// answer becomes an *APIError.
func (c *Client) Do(ctx context.Context, method, path string, q url.Values, body []byte, contentType string) (*http.Response, error) {
	u := c.BaseURL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, readError(resp)
}

func readError(resp *http.Response) error {
	var body struct {
		Error    *APIError `json:"error"`
		Decision *Decision `json:"decision"`
		Seq      uint64    `json:"seq"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(b, &body) != nil || body.Error == nil {
		return &APIError{Status: resp.StatusCode, Code: "http_error", Message: strings.TrimSpace(string(b))}
	}
	body.Error.Status, body.Error.Decision, body.Error.Seq = resp.StatusCode, body.Decision, body.Seq
	return body.Error
}

// GetJSON fetches path and decodes the JSON answer into out.
func (c *Client) GetJSON(ctx context.Context, path string, q url.Values, out any) error {
	resp, err := c.Do(ctx, http.MethodGet, path, q, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

// GetText fetches path as text.
func (c *Client) GetText(ctx context.Context, path string) ([]byte, error) {
	resp, err := c.Do(ctx, http.MethodGet, path, nil, nil, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// Emit posts a raw body (one event or a batch) and returns the status and
// the answer's body; API errors are returned as *APIError.
func (c *Client) Emit(ctx context.Context, body []byte, contentType string) (int, []byte, error) {
	resp, err := c.Do(ctx, http.MethodPost, "/v1/events", nil, body, contentType)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// Publish sends one CloudEvent built with the CloudEvents SDK and returns
// its receipt. A policy denial is an *APIError with code policy_denied.
func (c *Client) Publish(ctx context.Context, e cloudevents.Event) (*Receipt, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	_, body, err := c.Emit(ctx, b, "application/cloudevents+json")
	if err != nil {
		return nil, err
	}
	var rc Receipt
	return &rc, json.Unmarshal(body, &rc)
}

// ReplayLine is one stored event of GET /v1/events.
type ReplayLine struct {
	Seq      uint64          `json:"seq"`
	LeafHash string          `json:"leaf_hash"`
	Event    json.RawMessage `json:"event"`
	Error    *APIError       `json:"error,omitempty"`
}

// Replay streams GET /v1/events with the given filters.
func (c *Client) Replay(ctx context.Context, q url.Values, fn func(ReplayLine) error) error {
	resp, err := c.Do(ctx, http.MethodGet, "/v1/events", q, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return eachLine(resp.Body, func(b []byte) error {
		var l ReplayLine
		if err := json.Unmarshal(b, &l); err != nil {
			return fmt.Errorf("replay: malformed line: %w", err)
		}
		if l.Error != nil {
			return l.Error
		}
		return fn(l)
	})
}

func eachLine(r io.Reader, fn func([]byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		if err := fn(sc.Bytes()); err != nil {
			return err
		}
	}
	return sc.Err()
}

// Checkpoints streams every signed checkpoint note.
func (c *Client) Checkpoints(ctx context.Context, fn func(note []byte) error) error {
	resp, err := c.Do(ctx, http.MethodGet, "/v1/checkpoints", nil, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return eachLine(resp.Body, func(b []byte) error {
		var l struct {
			Note string `json:"note"`
		}
		if err := json.Unmarshal(b, &l); err != nil {
			return err
		}
		return fn([]byte(l.Note))
	})
}

// VerifierKey fetches the checkpoint verifier key.
func (c *Client) VerifierKey(ctx context.Context) (string, error) {
	b, err := c.GetText(ctx, "/v1/checkpoint/key")
	return strings.TrimSpace(string(b)), err
}

// VerifySource adapts the client to the verifier's source interface.
type VerifySource struct{ C *Client }

// Events streams every stored body in order.
func (s VerifySource) Events(ctx context.Context, fn func(seq uint64, body []byte) error) error {
	return s.C.Replay(ctx, nil, func(l ReplayLine) error { return fn(l.Seq, l.Event) })
}

// Checkpoints streams every checkpoint note.
func (s VerifySource) Checkpoints(ctx context.Context, fn func(note []byte) error) error {
	return s.C.Checkpoints(ctx, fn)
}

// TokenCreated is the answer of POST /v1/tokens.
type TokenCreated struct {
	ID     string `json:"id"`
	Token  string `json:"token"`
	Role   string `json:"role"`
	Source string `json:"source,omitempty"`
}

// CreateToken asks for a new token (admin).
func (c *Client) CreateToken(ctx context.Context, role, source string) (*TokenCreated, error) {
	b, _ := json.Marshal(map[string]string{"role": role, "source": source})
	resp, err := c.Do(ctx, http.MethodPost, "/v1/tokens", nil, b, "application/json")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var t TokenCreated
	return &t, json.NewDecoder(resp.Body).Decode(&t)
}

// IsAPIError reports whether err is an API error with the given code.
func IsAPIError(err error, code string) bool {
	var e *APIError
	return errors.As(err, &e) && e.Code == code
}
