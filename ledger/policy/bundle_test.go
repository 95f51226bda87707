package policy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

func rsaKeys(t *testing.T) (private, public []byte) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
}

// retar rewrites a bundle with edit applied to each file.
func retar(t *testing.T, b []byte, edit func(name string, data []byte) []byte) []byte {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var out bytes.Buffer
	gw := gzip.NewWriter(&out)
	tw := tar.NewWriter(gw)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		data = edit(h.Name, data)
		h.Size = int64(len(data))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write(data)
	}
	tw.Close()
	gw.Close()
	return out.Bytes()
}

// A set shipped as a signed OPA bundle loads with the signer's key and
// decides as the directory does; unsigned, tampered and wrongly signed
// bundles are refused.
func TestBundles(t *testing.T) {
	ctx := context.Background()
	priv, pub := rsaKeys(t)
	_, otherPub := rsaKeys(t)
	var signed, unsigned bytes.Buffer
	if err := BuildBundle(&signed, os.DirFS(realSetDir), "2026-12-07.1", priv, "security-team"); err != nil {
		t.Fatal(err)
	}
	if err := BuildBundle(&unsigned, os.DirFS(realSetDir), "2026-12-07.1", nil, ""); err != nil {
		t.Fatal(err)
	}
	keys := VerificationKeys("security-team", pub)
	s, info, err := LoadBundle(ctx, bytes.NewReader(signed.Bytes()), keys)
	if err != nil {
		t.Fatalf("signed bundle: %v", err)
	}
	if info.Signer != "security-team" || info.Revision != "2026-12-07.1" {
		t.Errorf("bundle info %+v", info)
	}
	dir := realSet(t)
	in := transferInput(nil, sgConsent("c-1"))
	if a, b := s.Decide(ctx, in), dir.Decide(ctx, in); a.Allow != b.Allow || len(a.Reasons) != len(b.Reasons) || !a.Allow {
		t.Errorf("the bundle decides %+v, the directory %+v", a, b)
	}
	if _, info, err := LoadBundle(ctx, bytes.NewReader(unsigned.Bytes()), nil); err != nil || info.Signer != "" {
		t.Errorf("unsigned bundle without keys: %v %+v", err, info)
	}
	tampered := retar(t, signed.Bytes(), func(name string, data []byte) []byte {
		if strings.HasSuffix(name, "processing.rego") {
			return bytes.Replace(data, []byte(`"privacy.data.transferred"`), []byte(`"privacy.data.transfered"`), 1)
		}
		return data
	})
	for name, c := range map[string]struct {
		b    []byte
		keys []byte
	}{
		"unsigned":  {unsigned.Bytes(), pub},
		"wrong key": {signed.Bytes(), otherPub},
		"tampered":  {tampered, pub},
	} {
		if _, _, err := LoadBundle(ctx, bytes.NewReader(c.b), VerificationKeys("security-team", c.keys)); !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("%s bundle: %v; want it refused", name, err)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// A bundle server is polled with If-None-Match: a changed bundle loads, an
// unchanged one costs a 304, a refused one keeps being refused.
func TestBundleServer(t *testing.T) {
	ctx := context.Background()
	priv, pub := rsaKeys(t)
	var signed bytes.Buffer
	if err := BuildBundle(&signed, os.DirFS(realSetDir), "r1", priv, "security-team"); err != nil {
		t.Fatal(err)
	}
	body := signed.Bytes()
	etag := `"r1"`
	gets := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gets++
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	b := &BundleServer{URL: srv.URL, Keys: VerificationKeys("security-team", pub)}
	s, info, err := b.Fetch(ctx)
	if err != nil || s == nil || info.Signer != "security-team" {
		t.Fatalf("first fetch: %v %+v", err, info)
	}
	if _, _, err := b.Fetch(ctx); !errors.Is(err, ErrNotModified) {
		t.Errorf("second fetch: %v, want not modified", err)
	}
	body, etag = []byte("not a bundle"), `"broken"`
	for i := 0; i < 2; i++ {
		if _, _, err := b.Fetch(ctx); !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("broken bundle, fetch %d: %v", i, err)
		}
	}
	if gets != 4 {
		t.Errorf("%d requests, want 4", gets)
	}
}
