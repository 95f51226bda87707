package keyserver

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

var fuzzMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, "LIST", http.MethodHead, http.MethodPatch}

// FuzzHandler sends arbitrary requests to the handler. Whatever comes in,
// it must not panic, and every answer must be JSON: an errors list, an
// envelope, or a bare health document.
func FuzzHandler(f *testing.F) {
	s, err := Open(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Shutdown(f.Context()) })
	h := s.Handler()
	do := func(method, path, body string) {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("X-Vault-Token", s.RootToken())
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	do(http.MethodPost, "/v1/transit/keys/sig", `{"type":"ed25519"}`)
	do(http.MethodPost, "/v1/transit/keys/sym", `{}`)

	f.Add(uint8(1), "transit/encrypt/sym", []byte(`{"plaintext":"aGVsbG8="}`))
	f.Fuzz(func(t *testing.T, m uint8, path string, body []byte) {
		method := fuzzMethods[int(m)%len(fuzzMethods)]
		p, query, _ := strings.Cut(path, "?")
		r := &http.Request{
			Method:     method,
			URL:        &url.URL{Path: "/v1/" + p, RawQuery: query},
			Header:     http.Header{"X-Vault-Token": {s.RootToken()}},
			Body:       io.NopCloser(bytes.NewReader(body)),
			Proto:      "HTTP/1.1",
			ProtoMajor: 1,
			ProtoMinor: 1,
		}
		if m >= 128 {
			r.Header.Del("X-Vault-Token")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)

		if w.Code < 200 || w.Code > 599 {
			t.Fatalf("status %d", w.Code)
		}
		if w.Code == http.StatusNoContent || method == http.MethodHead {
			return
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("status %d with content type %q", w.Code, ct)
		}
		var doc map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
			t.Fatalf("status %d with a body that is not a JSON object: %q", w.Code, w.Body.String())
		}
		if w.Code < 400 {
			return
		}
		if errs, ok := doc["errors"]; ok {
			if _, ok := errs.([]any); !ok {
				t.Fatalf("errors is not a list: %q", w.Body.String())
			}
			return
		}
		// Only a batch whose items failed answers an error status with
		// the envelope, its items carrying the errors.
		data, _ := doc["data"].(map[string]any)
		if _, ok := data["batch_results"]; !ok {
			t.Fatalf("status %d without errors: %q", w.Code, w.Body.String())
		}
	})
}
