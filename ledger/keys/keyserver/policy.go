package keyserver

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// Key types, spelt as transit spells them.
const (
	typeAES128GCM96 = "aes128-gcm96"
	typeAES256GCM96 = "aes256-gcm96"
	typeChaCha20    = "chacha20-poly1305"
	typeEd25519     = "ed25519"
)

// Transit's wire prefix for ciphertexts and signatures: "vault:v<version>:".
const wirePrefix = "vault:v"

// Messages that transit returns word for word; clients match on some of them.
const (
	msgTooOld          = "ciphertext or signature version is disallowed by policy (too old)"
	msgMissingContext  = "missing 'context' for key derivation; the key was created using a derived key, which means additional, per-request information must be included in order to perform operations with the key"
	msgNonceNotAllowed = "provided nonce not allowed for this key"
)

// userError is a fault in the request rather than in the server; it is
// answered with 400 and its text, as transit does with its UserError.
type userError string

func (e userError) Error() string { return string(e) }

// keyVersion is one generation of a key. Once created it never changes, so
// policies may share it between copies.
type keyVersion struct {
	// Key is the symmetric key, or the 64-byte Ed25519 private key.
	Key          []byte    `json:"key"`
	PublicKey    []byte    `json:"public_key,omitempty"`
	CreationTime time.Time `json:"creation_time"`
}

// policy is a named transit key: its versions and the rules on using them.
// A policy held by the server is never mutated in place; changes are made
// on a clone, persisted, then swapped in.
type policy struct {
	Name                 string              `json:"name"`
	Type                 string              `json:"type"`
	Derived              bool                `json:"derived"`
	DeletionAllowed      bool                `json:"deletion_allowed"`
	MinDecryptionVersion int                 `json:"min_decryption_version"`
	MinEncryptionVersion int                 `json:"min_encryption_version"`
	LatestVersion        int                 `json:"latest_version"`
	Versions             map[int]*keyVersion `json:"versions"`
}

func supportedType(t string) bool {
	switch t {
	case typeAES128GCM96, typeAES256GCM96, typeChaCha20, typeEd25519:
		return true
	}
	return false
}

func newPolicy(name, typ string, derived bool, now time.Time) *policy {
	p := &policy{Name: name, Type: typ, Derived: derived, MinDecryptionVersion: 1, Versions: map[int]*keyVersion{}}
	p.rotate(now)
	return p
}

func (p *policy) clone() *policy {
	c := *p
	c.Versions = maps.Clone(p.Versions)
	return &c
}

// rotate adds a fresh version and makes it the latest.
func (p *policy) rotate(now time.Time) {
	v := &keyVersion{CreationTime: now.UTC()}
	switch p.Type {
	case typeAES128GCM96:
		v.Key = randomBytes(16)
	case typeEd25519:
		pub, priv, _ := ed25519.GenerateKey(rand.Reader) // crypto/rand never fails
		v.Key, v.PublicKey = priv, pub
	default:
		v.Key = randomBytes(32)
	}
	p.LatestVersion++
	p.Versions[p.LatestVersion] = v
}

// wipe overwrites the key material in memory. It is best effort: the Go
// runtime may have copied the bytes, but the live copy at least goes.
func (p *policy) wipe() {
	for _, v := range p.Versions {
		clear(v.Key)
	}
}

func (p *policy) symmetric() bool {
	return p.Type == typeAES128GCM96 || p.Type == typeAES256GCM96 || p.Type == typeChaCha20
}

func (p *policy) signing() bool { return p.Type == typeEd25519 }

// validate checks a policy loaded from disk before it is trusted.
func (p *policy) validate() error {
	if !validName(p.Name) || !supportedType(p.Type) || p.LatestVersion < 1 ||
		p.MinDecryptionVersion < 1 || p.MinDecryptionVersion > p.LatestVersion ||
		p.MinEncryptionVersion < 0 || p.MinEncryptionVersion > p.LatestVersion {
		return fmt.Errorf("malformed key record")
	}
	for ver := 1; ver <= p.LatestVersion; ver++ {
		v, ok := p.Versions[ver]
		if !ok || v == nil {
			return fmt.Errorf("key record lacks version %d", ver)
		}
		want := 32
		switch p.Type {
		case typeAES128GCM96:
			want = 16
		case typeEd25519:
			want = ed25519.PrivateKeySize
			if len(v.PublicKey) != ed25519.PublicKeySize {
				return fmt.Errorf("key record version %d has a bad public key", ver)
			}
		}
		if len(v.Key) != want {
			return fmt.Errorf("key record version %d has a bad key length", ver)
		}
	}
	return nil
}

// aead returns the cipher for one version, deriving a per-context key with
// HKDF-SHA256 (info = context, no salt) when the key is derived, as
// transit's hkdf_sha256 mode does.
func (p *policy) aead(ver int, context []byte) (cipher.AEAD, error) {
	v, ok := p.Versions[ver]
	if !ok {
		return nil, userError("no such key version")
	}
	key := v.Key
	if p.Derived {
		if len(context) == 0 {
			return nil, userError(msgMissingContext)
		}
		dk, err := hkdf.Key(sha256.New, v.Key, nil, string(context), len(v.Key))
		if err != nil {
			return nil, fmt.Errorf("derive key: %w", err)
		}
		key = dk
	}
	if p.Type == typeChaCha20 {
		return chacha20poly1305.New(key)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// encrypt seals plaintext with the given version (0: latest) and returns
// transit's "vault:vN:base64(nonce|ciphertext|tag)" and the version used.
func (p *policy) encrypt(ver int, context, aad, plaintext []byte) (string, int, error) {
	if !p.symmetric() {
		return "", 0, userError(fmt.Sprintf("message encryption not supported for key type %s", p.Type))
	}
	switch {
	case ver == 0:
		ver = p.LatestVersion
	case ver < 0:
		return "", 0, userError("requested version for encryption is negative")
	case ver > p.LatestVersion:
		return "", 0, userError("requested version for encryption is higher than the latest key version")
	case ver < p.MinEncryptionVersion:
		return "", 0, userError("requested version for encryption is less than the minimum encryption key version")
	}
	a, err := p.aead(ver, context)
	if err != nil {
		return "", 0, err
	}
	nonce := randomBytes(a.NonceSize())
	out := a.Seal(nonce, nonce, plaintext, aad)
	return wirePrefix + strconv.Itoa(ver) + ":" + base64.StdEncoding.EncodeToString(out), ver, nil
}

// splitWire parses "vault:vN:payload" into N and payload; what names the
// kind of blob in the messages ("ciphertext" or "signature").
func (p *policy) splitWire(value, what string) (int, string, error) {
	if !strings.HasPrefix(value, wirePrefix) {
		return 0, "", userError("invalid " + what + ": no prefix")
	}
	verStr, payload, ok := strings.Cut(strings.TrimPrefix(value, wirePrefix), ":")
	if !ok {
		return 0, "", userError("invalid " + what + ": wrong number of fields")
	}
	ver, err := strconv.Atoi(verStr)
	if err != nil {
		return 0, "", userError("invalid " + what + ": version number could not be decoded")
	}
	if ver == 0 && what == "ciphertext" {
		ver = 1 // transit's compatibility with keys numbered from zero
	}
	if ver > p.LatestVersion {
		return 0, "", userError("invalid " + what + ": version is too new")
	}
	if p.MinDecryptionVersion > 0 && ver < p.MinDecryptionVersion {
		return 0, "", userError(msgTooOld)
	}
	return ver, payload, nil
}

func (p *policy) decrypt(context, aad []byte, value string) ([]byte, error) {
	if !p.symmetric() {
		return nil, userError(fmt.Sprintf("message decryption not supported for key type %s", p.Type))
	}
	ver, payload, err := p.splitWire(value, "ciphertext")
	if err != nil {
		return nil, err
	}
	raw, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		return nil, userError("invalid ciphertext: could not decode base64")
	}
	a, err := p.aead(ver, context)
	if err != nil {
		return nil, err
	}
	if len(raw) < a.NonceSize() {
		return nil, userError("invalid ciphertext length")
	}
	plain, err := a.Open(nil, raw[:a.NonceSize()], raw[a.NonceSize():], aad)
	if err != nil {
		return nil, userError(err.Error())
	}
	return plain, nil
}

// sign makes a plain Ed25519 signature over input (transit signs the input
// itself, not a hash, for ed25519), so any Ed25519 verifier accepts it.
func (p *policy) sign(ver int, input []byte, jws bool) (string, int, error) {
	if !p.signing() {
		return "", 0, userError(fmt.Sprintf("key type %s does not support signing", p.Type))
	}
	switch {
	case ver == 0:
		ver = p.LatestVersion
	case ver < 0:
		return "", 0, userError("requested version for signing is negative")
	case ver > p.LatestVersion:
		return "", 0, userError("requested version for signing is higher than the latest key version")
	case ver < p.MinEncryptionVersion:
		return "", 0, userError("requested version for signing is less than the minimum encryption key version")
	}
	v, ok := p.Versions[ver]
	if !ok {
		return "", 0, userError("no such key version")
	}
	sig := ed25519.Sign(ed25519.PrivateKey(v.Key), input)
	enc := base64.StdEncoding.EncodeToString(sig)
	if jws {
		enc = base64.RawURLEncoding.EncodeToString(sig)
	}
	return wirePrefix + strconv.Itoa(ver) + ":" + enc, ver, nil
}

func (p *policy) verify(input []byte, value string, jws bool) (bool, error) {
	if !p.signing() {
		return false, userError(fmt.Sprintf("key type %s does not support verification", p.Type))
	}
	ver, payload, err := p.splitWire(value, "signature")
	if err != nil {
		return false, err
	}
	dec := base64.StdEncoding
	if jws {
		dec = base64.RawURLEncoding
	}
	sig, err := dec.DecodeString(payload)
	if err != nil {
		return false, userError("invalid base64 signature value")
	}
	v, ok := p.Versions[ver]
	if !ok {
		return false, userError("no such key version")
	}
	return ed25519.Verify(ed25519.PublicKey(v.PublicKey), input, sig), nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error
	return b
}
