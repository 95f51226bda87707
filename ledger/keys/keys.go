// Package keys is Custos's only door to Vault: every key operation goes
// through github.com/hashicorp/vault/api to the transit secrets engine
// (https://developer.hashicorp.com/vault/api-docs/secret/transit). Keys are
// never exportable; Custos holds plaintext data keys only in memory.
//
// Three kinds of transit key are used:
//   - the checkpoint key (ed25519) signs the ledger's checkpoints;
//   - the meta key (aes256-gcm96) wraps Custos's own pseudonymization key;
//   - one key per data subject (aes256-gcm96), named by the subject's
//     pseudonym, wraps that subject's data key. Deleting it is the
//     crypto-shredding of the subject.
package keys

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// ErrUnavailable reports that Vault could not be reached or answered with a
// server error; callers turn it into 503.
var ErrUnavailable = errors.New("key service unavailable")

// ErrNotFound reports a transit key that does not exist (or was destroyed).
var ErrNotFound = errors.New("key not found")

// Config locates Vault.
type Config struct {
	Address string
	Token   string
	Mount   string        // transit mount path, "transit" by default
	Timeout time.Duration // per call; 5s by default
	// RoleID and SecretID log in with AppRole when Token is empty.
	RoleID   string
	SecretID string
}

// Client performs transit operations and counts them.
type Client struct {
	vc       *vault.Client
	mount    string
	roleID   string
	secretID string
	calls    atomic.Uint64
}

// New returns a client for the transit engine at cfg.Address.
func New(cfg Config) (*Client, error) {
	vcfg := vault.DefaultConfig()
	if vcfg.Error != nil {
		return nil, vcfg.Error
	}
	vcfg.Address = cfg.Address
	vcfg.MaxRetries = 1
	vcfg.Timeout = cfg.Timeout
	if vcfg.Timeout == 0 {
		vcfg.Timeout = 5 * time.Second
	}
	vc, err := vault.NewClient(vcfg)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	vc.SetToken(cfg.Token)
	c := &Client{vc: vc, mount: strings.Trim(cfg.Mount, "/"), roleID: cfg.RoleID, secretID: cfg.SecretID}
	if c.mount == "" {
		c.mount = "transit"
	}
	return c, nil
}

// Login exchanges AppRole credentials for a token when they were given;
// with a token it does nothing.
func (c *Client) Login(ctx context.Context) error {
	if c.roleID == "" {
		return nil
	}
	c.calls.Add(1)
	s, err := c.vc.Logical().WriteWithContext(ctx, "auth/approle/login", map[string]any{"role_id": c.roleID, "secret_id": c.secretID})
	if err != nil {
		return classify(err)
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return errors.New("vault: approle login returned no token")
	}
	c.vc.SetToken(s.Auth.ClientToken)
	return nil
}

// Calls is the number of Vault requests made so far.
func (c *Client) Calls() uint64 { return c.calls.Load() }

func (c *Client) write(ctx context.Context, path string, data map[string]any) (*vault.Secret, error) {
	var s *vault.Secret
	err := c.retryLogin(ctx, func() (err error) {
		c.calls.Add(1)
		s, err = c.vc.Logical().WriteWithContext(ctx, c.mount+"/"+path, data)
		return err
	})
	return s, classify(err)
}

func (c *Client) read(ctx context.Context, path string) (*vault.Secret, error) {
	var s *vault.Secret
	err := c.retryLogin(ctx, func() (err error) {
		c.calls.Add(1)
		s, err = c.vc.Logical().ReadWithContext(ctx, c.mount+"/"+path)
		return err
	})
	if err == nil && s == nil {
		return nil, ErrNotFound
	}
	return s, classify(err)
}

// retryLogin runs op, and when Vault refuses the token (it expired) and
// AppRole credentials are configured, logs in again and retries once.
func (c *Client) retryLogin(ctx context.Context, op func() error) error {
	err := op()
	var re *vault.ResponseError
	if err == nil || c.roleID == "" || !errors.As(err, &re) || re.StatusCode != http.StatusForbidden {
		return err
	}
	if lerr := c.Login(ctx); lerr != nil {
		return err
	}
	return op()
}

func classify(err error) error {
	if err == nil {
		return nil
	}
	var re *vault.ResponseError
	if errors.As(err, &re) {
		switch {
		case re.StatusCode == http.StatusNotFound || (re.StatusCode == http.StatusBadRequest && transitNotFound(re.Errors)):
			return fmt.Errorf("%w: %v", ErrNotFound, err)
		case re.StatusCode >= 500 || re.StatusCode == http.StatusTooManyRequests:
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return fmt.Errorf("vault: %w", err)
	}
	// Transport errors: refused connections, timeouts, DNS.
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// transitNotFound recognises transit's way of saying a key does not exist:
// Vault answers 400 (not 404) when a missing key is used, with messages such
// as "encryption key not found" or "no existing key named x could be found".
func transitNotFound(msgs []string) bool {
	for _, m := range msgs {
		if strings.Contains(m, "key not found") || strings.Contains(m, "could be found") {
			return true
		}
	}
	return false
}

// Health checks that Vault answers and the transit mount is usable.
func (c *Client) Health(ctx context.Context) error {
	c.calls.Add(1)
	h, err := c.vc.Sys().HealthWithContext(ctx)
	if err != nil {
		return classify(err)
	}
	if h.Sealed {
		return fmt.Errorf("%w: vault is sealed", ErrUnavailable)
	}
	return nil
}

// EnsureKey creates the named transit key if it does not exist. Creating an
// existing key is a no-op in transit, so this is safe to race.
func (c *Client) EnsureKey(ctx context.Context, name, typ string) error {
	_, err := c.write(ctx, "keys/"+name, map[string]any{"type": typ, "exportable": false})
	return err
}

// PublicKey returns the latest public half of an ed25519 transit key.
func (c *Client) PublicKey(ctx context.Context, name string) (ed25519.PublicKey, error) {
	s, err := c.read(ctx, "keys/"+name)
	if err != nil {
		return nil, err
	}
	latest := fmt.Sprint(s.Data["latest_version"])
	keysMap, _ := s.Data["keys"].(map[string]any)
	entry, _ := keysMap[latest].(map[string]any)
	pub, _ := entry["public_key"].(string)
	raw, err := base64.StdEncoding.DecodeString(pub)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("vault: key %s has no ed25519 public key", name)
	}
	return ed25519.PublicKey(raw), nil
}

// Sign signs msg with an ed25519 transit key and returns the raw signature.
func (c *Client) Sign(ctx context.Context, name string, msg []byte) ([]byte, error) {
	s, err := c.write(ctx, "sign/"+name, map[string]any{"input": base64.StdEncoding.EncodeToString(msg)})
	if err != nil {
		return nil, err
	}
	return decodeVaultBlob(s.Data["signature"])
}

// DataKey asks transit for a new 256-bit data key wrapped by the named key,
// returning both halves.
func (c *Client) DataKey(ctx context.Context, name string) (plaintext []byte, wrapped string, err error) {
	s, err := c.write(ctx, "datakey/plaintext/"+name, map[string]any{"bits": 256})
	if err != nil {
		return nil, "", err
	}
	wrapped, _ = s.Data["ciphertext"].(string)
	p, _ := s.Data["plaintext"].(string)
	plaintext, err = base64.StdEncoding.DecodeString(p)
	if err != nil || len(plaintext) != 32 || wrapped == "" {
		return nil, "", fmt.Errorf("vault: malformed datakey response")
	}
	return plaintext, wrapped, nil
}

// Unwrap decrypts a wrapped data key.
func (c *Client) Unwrap(ctx context.Context, name, wrapped string) ([]byte, error) {
	s, err := c.write(ctx, "decrypt/"+name, map[string]any{"ciphertext": wrapped})
	if err != nil {
		return nil, err
	}
	p, _ := s.Data["plaintext"].(string)
	out, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return nil, fmt.Errorf("vault: malformed decrypt response")
	}
	return out, nil
}

// DestroyKey allows deletion of the named key and deletes it. A key already
// gone is not an error: destruction is idempotent.
func (c *Client) DestroyKey(ctx context.Context, name string) error {
	if _, err := c.write(ctx, "keys/"+name+"/config", map[string]any{"deletion_allowed": true}); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	c.calls.Add(1)
	_, err := c.vc.Logical().DeleteWithContext(ctx, c.mount+"/keys/"+name)
	if err = classify(err); errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// KeyExists reports whether the named transit key exists.
func (c *Client) KeyExists(ctx context.Context, name string) (bool, error) {
	_, err := c.read(ctx, "keys/"+name)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// decodeVaultBlob strips transit's "vault:vN:" prefix and decodes the rest.
func decodeVaultBlob(v any) ([]byte, error) {
	s, _ := v.(string)
	parts := strings.SplitN(s, ":", 3)
	if len(parts) != 3 || parts[0] != "vault" {
		return nil, fmt.Errorf("vault: malformed signature")
	}
	return base64.StdEncoding.DecodeString(parts[2])
}
