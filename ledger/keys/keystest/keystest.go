// Package keystest starts the embedded dev key server for tests, the way
// net/http/httptest starts an HTTP server: on loopback, with a fresh state
// directory, shut down when the test ends.
package keystest

import (
	"context"
	"testing"

	"custos.dev/ledger/keys"
	"custos.dev/ledger/keys/keyserver"
)

// Server is a running dev key server and how to reach it.
type Server struct {
	*keyserver.Server
	URL   string
	Token string
}

// Start starts a key server for the test.
func Start(tb testing.TB) *Server {
	tb.Helper()
	ks, err := keyserver.Open(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	url, err := ks.ListenAndServe(context.Background(), "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = ks.Shutdown(context.Background()) })
	return &Server{Server: ks, URL: url, Token: ks.RootToken()}
}

// Client returns a new transit client of the server.
func (s *Server) Client(tb testing.TB) *keys.Client {
	tb.Helper()
	c, err := keys.New(keys.Config{Address: s.URL, Token: s.Token})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}
