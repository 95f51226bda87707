package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/open-policy-agent/opa/v1/bundle"
)

// BundleServer fetches a set from a bundle server the way OPA's bundle
// service does: GET the bundle's URL, with If-None-Match set to the ETag of
// the last bundle fetched, so an unchanged bundle costs a 304.
type BundleServer struct {
	URL  string
	Keys *bundle.VerificationConfig // nil: unsigned bundles accepted
	HTTP *http.Client               // nil: http.DefaultClient
	Opts []LoadOption

	etag string
}

// ErrNotModified is Fetch's answer when the bundle has not changed since
// the last fetch.
var ErrNotModified = errors.New("bundle not modified")

// Fetch gets the bundle if it changed and loads it. A bundle that does not
// load (or verify) is refused with ErrInvalidPolicy, and its ETag is not
// kept, so a fixed bundle under the same ETag is fetched again.
func (b *BundleServer) Fetch(ctx context.Context) (*Set, BundleInfo, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.URL, nil)
	if err != nil {
		return nil, BundleInfo{}, fmt.Errorf("bundle server: %w", err)
	}
	if b.etag != "" {
		req.Header.Set("If-None-Match", b.etag)
	}
	c := b.HTTP
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, BundleInfo{}, fmt.Errorf("bundle server: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, BundleInfo{}, ErrNotModified
	case http.StatusOK:
	default:
		return nil, BundleInfo{}, fmt.Errorf("bundle server: %s answered %s", b.URL, resp.Status)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxBundleBytes+1))
	if err != nil {
		return nil, BundleInfo{}, fmt.Errorf("bundle server: %w", err)
	}
	if len(raw) > MaxBundleBytes {
		return nil, BundleInfo{}, fmt.Errorf("%w: the bundle exceeds %d bytes", ErrInvalidPolicy, MaxBundleBytes)
	}
	s, info, err := LoadBundle(ctx, bytes.NewReader(raw), b.Keys, b.Opts...)
	if err != nil {
		return nil, BundleInfo{}, err
	}
	b.etag = resp.Header.Get("ETag")
	return s, info, nil
}
