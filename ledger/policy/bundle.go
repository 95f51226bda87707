package policy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"testing/fstest"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
)

// Bundles are the way policy travels in the OPA ecosystem: a .tar.gz of
// Rego modules and data.json files, optionally signed (.signatures.json, a
// JWT over every file's digest). Custos reads and writes them with OPA's own
// bundle package (docs/policies.md, "Bundles").

// BundleInfo is what a loaded bundle says about itself.
type BundleInfo struct {
	// Revision is the bundle manifest's revision, as its builder set it.
	Revision string `json:"bundle_revision,omitempty"`
	// Signer is the key id that signed the bundle, empty when it was not
	// verified.
	Signer string `json:"signer,omitempty"`
}

// MaxBundleBytes bounds a bundle's size, compressed and uncompressed.
const MaxBundleBytes = 32 << 20

// LoadBundle reads an OPA bundle and loads it as a set, like Load. With
// keys non-nil the bundle must carry a valid signature by one of them: an
// unsigned, tampered or wrongly signed bundle is refused (ErrInvalidPolicy).
// A bundle's data files sit at their data paths, as OPA places them: the
// settings are custos/config/data.json in the bundle.
func LoadBundle(ctx context.Context, r io.Reader, keys *bundle.VerificationConfig, opts ...LoadOption) (*Set, BundleInfo, error) {
	rd := bundle.NewReader(io.LimitReader(r, MaxBundleBytes)).WithSizeLimitBytes(MaxBundleBytes).WithRegoVersion(ast.RegoV1)
	if keys != nil {
		rd = rd.WithBundleVerificationConfig(keys)
	} else {
		rd = rd.WithSkipBundleVerification(true)
	}
	b, err := rd.Read()
	if err != nil {
		return nil, BundleInfo{}, fmt.Errorf("%w: bundle: %w", ErrInvalidPolicy, err)
	}
	info := BundleInfo{Revision: b.Manifest.Revision}
	if keys != nil {
		info.Signer = signerOf(b.Signatures.Signatures)
	}
	fsys, err := bundleFS(&b)
	if err != nil {
		return nil, BundleInfo{}, fmt.Errorf("%w: bundle: %w", ErrInvalidPolicy, err)
	}
	s, err := Load(ctx, fsys, opts...)
	return s, info, err
}

// bundleFS lays a bundle out as a policy directory: its modules at their
// paths, its data document as data/bundle.json (data/ maps to the root).
func bundleFS(b *bundle.Bundle) (fs.FS, error) {
	out := fstest.MapFS{}
	for _, m := range b.Modules {
		p := strings.TrimPrefix(m.Path, "/")
		if strings.HasPrefix(p, "data/") {
			return nil, fmt.Errorf("module %s is under data/", p)
		}
		out[p] = &fstest.MapFile{Data: m.Raw}
	}
	if len(b.Data) > 0 {
		raw, err := json.Marshal(b.Data)
		if err != nil {
			return nil, err
		}
		out["data/bundle.json"] = &fstest.MapFile{Data: raw}
	}
	return out, nil
}

// signerOf reads the key id from a bundle's (already verified) signature:
// the JWT header's kid, else the payload's keyid.
func signerOf(tokens []string) string {
	for _, tok := range tokens {
		parts := strings.Split(tok, ".")
		if len(parts) != 3 {
			continue
		}
		for _, part := range parts[:2] {
			raw, err := base64.RawURLEncoding.DecodeString(part)
			if err != nil {
				continue
			}
			var claims struct {
				Kid   string `json:"kid"`
				KeyID string `json:"keyid"`
			}
			if json.Unmarshal(raw, &claims) == nil {
				if claims.Kid != "" {
					return claims.Kid
				}
				if claims.KeyID != "" {
					return claims.KeyID
				}
			}
		}
	}
	return ""
}

// BuildBundle writes the set in fsys as an OPA bundle with the given
// manifest revision, signed with signingKey (a PEM private key; RS256 for
// RSA, ES256 for EC) under keyID when signingKey is set. The data document
// is placed as OPA would load it: data.custos.config from the set's
// data/custos/config/data.json.
func BuildBundle(w io.Writer, fsys fs.FS, revision string, signingKey []byte, keyID string) error {
	files, err := readFiles(fsys)
	if err != nil {
		return err
	}
	data, err := loadData(files)
	if err != nil {
		return err
	}
	b := bundle.Bundle{Manifest: bundle.Manifest{Revision: revision}, Data: data}
	b.Manifest.Init()
	for _, f := range files {
		if f.isRego() {
			b.Modules = append(b.Modules, bundle.ModuleFile{URL: "/" + f.path, Path: "/" + f.path, Raw: f.src})
		}
	}
	if len(signingKey) > 0 {
		alg := "RS256"
		if bytes.Contains(signingKey, []byte("EC PRIVATE KEY")) {
			alg = "ES256"
		}
		if err := b.GenerateSignature(bundle.NewSigningConfig(string(signingKey), alg, ""), keyID, false); err != nil {
			return fmt.Errorf("sign the bundle: %w", err)
		}
	}
	return bundle.NewWriter(w).Write(b)
}

// VerificationKeys is the verification configuration for bundles signed by
// the key with id keyID whose public half is the PEM publicKey.
func VerificationKeys(keyID string, publicKey []byte) *bundle.VerificationConfig {
	alg := "RS256"
	if bytes.Contains(publicKey, []byte("EC ")) || bytes.Contains(publicKey, []byte("ecdsa")) {
		alg = "ES256"
	}
	return bundle.NewVerificationConfig(map[string]*bundle.KeyConfig{keyID: {Key: string(publicKey), Algorithm: alg}}, keyID, "", nil)
}
