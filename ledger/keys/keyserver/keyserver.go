// Package keyserver is an embedded, persistent key server that speaks the
// subset of HashiCorp Vault's HTTP API that Custos uses: the transit
// secrets engine (https://developer.hashicorp.com/vault/api-docs/secret/transit)
// with ed25519, aes128-gcm96, aes256-gcm96 and chacha20-poly1305 keys,
// plus sys/health, sys/seal-status, sys/mounts and
// auth/token/lookup-self. Requests, responses, status codes, error texts and
// the "vault:vN:" ciphertext and signature formats follow Vault's, so a
// github.com/hashicorp/vault/api client cannot tell it from Vault for that
// subset.
//
// It exists for Custos's single-machine default and for tests, where no
// Vault binary can be installed. It is not a Vault: there is no seal, no
// policies beyond one root token, no leases, no exportable keys, no HA, and
// one process owns its state directory. Production points VAULT_ADDR at a
// real Vault or OpenBao.
//
// State lives under one directory, sealed at rest with a master key kept
// beside it (docs/keys-devserver.md describes the layout). Deleting a
// transit key shreds its file, which is how Custos crypto-shreds a subject.
// Logs carry methods, paths and status codes, never plaintexts, key
// material or tokens.
package keyserver

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// vaultVersion is the Vault release whose API this server imitates,
// tagged so that nobody mistakes it for that release.
const vaultVersion = "1.21.0+custos-keyserver"

// defaultMount is the transit mount every new state directory starts with.
const defaultMount = "transit/"

// Server is the key server. Its methods are safe for concurrent use.
type Server struct {
	log   *slog.Logger
	store *store
	token string
	srv   *http.Server

	requests atomic.Uint64

	// life is held shared by every request and exclusively by Shutdown,
	// which therefore waits for requests in flight.
	life   sync.RWMutex
	closed bool

	mu     sync.RWMutex // guards state and mounts
	state  persistedState
	mounts map[string]*mount
}

// Option configures Open.
type Option func(*Server)

// WithLogger sets the logger; by default the server logs nothing.
func WithLogger(l *slog.Logger) Option {
	return func(s *Server) {
		if l != nil {
			s.log = l
		}
	}
}

// persistedState is state.enc.
type persistedState struct {
	Version       int         `json:"version"`
	ClusterID     string      `json:"cluster_id"`
	ClusterName   string      `json:"cluster_name"`
	TokenAccessor string      `json:"token_accessor"`
	TokenCreated  time.Time   `json:"token_created"`
	Mounts        []mountInfo `json:"mounts"`
}

type mountInfo struct {
	Path        string    `json:"path"` // with trailing slash, as Vault lists it
	UUID        string    `json:"uuid"`
	Accessor    string    `json:"accessor"`
	Description string    `json:"description"`
	Created     time.Time `json:"created"`
}

// mount is one transit mount and its keys. Locks are taken in the order
// Server.mu, mount.mu, key.mu, never the other way round.
type mount struct {
	info mountInfo
	mu   sync.RWMutex // guards keys and gone
	keys map[string]*key
	gone bool // disabled: no key may be created in it any more
}

// key holds one transit key; pol is nil once the key is deleted, which
// requests that found the key before the deletion must check.
type key struct {
	mu  sync.RWMutex
	pol *policy
}

// Open loads the state under dir, creating the directory, the master key,
// the root token and a transit/ mount on first use. The directory stays
// locked until Shutdown.
func Open(dir string, opts ...Option) (*Server, error) {
	s := &Server{log: slog.New(slog.DiscardHandler), mounts: map[string]*mount{}}
	for _, o := range opts {
		o(s)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keyserver: %w", err)
	}
	lock, err := lockDir(filepath.Join(dir, lockFile))
	if err != nil {
		return nil, err
	}
	if err := s.load(dir); err != nil {
		_ = unlockDir(lock)
		return nil, err
	}
	s.store.lock = lock
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	n := 0
	for _, m := range s.mounts {
		n += len(m.keys)
	}
	s.log.Info("dev key server state opened", "dir", dir, "mounts", len(s.mounts), "keys", n)
	return s, nil
}

func (s *Server) load(dir string) error {
	master, created, err := loadOrCreateMaster(dir)
	if err != nil {
		return fmt.Errorf("keyserver: master key: %w", err)
	}
	if created {
		s.log.Info("dev key server created a master key", "file", filepath.Join(dir, masterKeyFile))
	}
	if info, err := os.Stat(filepath.Join(dir, masterKeyFile)); err == nil && info.Mode().Perm()&0o077 != 0 {
		s.log.Warn("dev key server master key is readable by others", "file", filepath.Join(dir, masterKeyFile), "mode", info.Mode().Perm().String())
	}
	st, err := newStore(dir, master)
	clear(master)
	if err != nil {
		return fmt.Errorf("keyserver: %w", err)
	}
	s.store = st
	if err := removeTemps(dir); err != nil {
		return fmt.Errorf("keyserver: %w", err)
	}
	if err := s.loadToken(dir); err != nil {
		return err
	}
	if err := s.loadState(); err != nil {
		return err
	}
	return s.loadKeys()
}

func (s *Server) loadToken(dir string) error {
	path := filepath.Join(dir, rootTokenFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		s.token = strings.TrimSpace(string(b))
		if s.token == "" {
			return fmt.Errorf("%w: %s is empty", ErrCorrupt, rootTokenFile)
		}
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("keyserver: %w", err)
	}
	s.token = newToken()
	if err := writeAtomic(path, []byte(s.token+"\n"), 0o600); err != nil {
		return fmt.Errorf("keyserver: root token: %w", err)
	}
	s.log.Info("dev key server created a root token", "file", path)
	return nil
}

func (s *Server) loadState() error {
	plain, err := s.store.readSealed(stateFile)
	if errors.Is(err, fs.ErrNotExist) {
		if hasSealedState(s.store.dir) {
			return fmt.Errorf("%w: %s is missing but key files exist", ErrCorrupt, stateFile)
		}
		now := time.Now().UTC()
		s.state = persistedState{
			Version:       1,
			ClusterID:     newUUID(),
			ClusterName:   "custos-keyserver",
			TokenAccessor: randomID(24),
			TokenCreated:  now,
		}
		info := mountInfo{Path: defaultMount, UUID: newUUID(), Accessor: "transit_" + randomID(8), Description: "transit secrets engine of the Custos dev key server", Created: now}
		s.state.Mounts = []mountInfo{info}
		if err := s.persistState(s.state); err != nil {
			return err
		}
		// loadKeys creates the mount's directory.
		s.mounts[info.Path] = &mount{info: info, keys: map[string]*key{}}
		return nil
	}
	if err != nil {
		return fmt.Errorf("keyserver: %w", err)
	}
	if err := json.Unmarshal(plain, &s.state); err != nil || s.state.Version != 1 || !validUUID(s.state.ClusterID) {
		return fmt.Errorf("%w: %s is malformed", ErrCorrupt, stateFile)
	}
	for _, info := range s.state.Mounts {
		if !validMountPath(info.Path) || !validUUID(info.UUID) {
			return fmt.Errorf("%w: %s lists a malformed mount", ErrCorrupt, stateFile)
		}
		s.mounts[info.Path] = &mount{info: info, keys: map[string]*key{}}
	}
	return nil
}

// loadKeys reads every key file, and shreds the directories of mounts that
// a crash left behind after they were disabled.
func (s *Server) loadKeys() error {
	root := filepath.Join(s.store.dir, keysDir)
	if err := mkdirSynced(root); err != nil {
		return fmt.Errorf("keyserver: %w", err)
	}
	byUUID := map[string]*mount{}
	for _, m := range s.mounts {
		byUUID[m.info.UUID] = m
	}
	dirs, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("keyserver: %w", err)
	}
	for _, d := range dirs {
		m := byUUID[d.Name()]
		if !d.IsDir() {
			continue
		}
		if m == nil {
			if validUUID(d.Name()) {
				s.log.Warn("dev key server removing the keys of a disabled mount", "mount_uuid", d.Name())
				if err := s.shredMountDir(d.Name()); err != nil {
					return fmt.Errorf("keyserver: %w", err)
				}
			}
			continue
		}
		if err := removeTemps(filepath.Join(root, d.Name())); err != nil {
			return fmt.Errorf("keyserver: %w", err)
		}
		files, err := os.ReadDir(filepath.Join(root, d.Name()))
		if err != nil {
			return fmt.Errorf("keyserver: %w", err)
		}
		for _, f := range files {
			if f.IsDir() || !strings.HasSuffix(f.Name(), keyFileExt) {
				continue
			}
			rel := keyRel(d.Name(), f.Name())
			plain, err := s.store.readSealed(rel)
			if err != nil {
				return fmt.Errorf("keyserver: %w", err)
			}
			var p policy
			err = json.Unmarshal(plain, &p)
			clear(plain)
			if err != nil {
				return fmt.Errorf("%w: %s is malformed", ErrCorrupt, rel)
			}
			if err := p.validate(); err != nil {
				return fmt.Errorf("%w: %s: %v", ErrCorrupt, rel, err)
			}
			if s.store.keyFileName(p.Name) != f.Name() {
				return fmt.Errorf("%w: %s holds another key", ErrCorrupt, rel)
			}
			m.keys[p.Name] = &key{pol: &p}
		}
	}
	for _, m := range s.mounts {
		if _, err := os.Stat(filepath.Join(root, m.info.UUID)); errors.Is(err, fs.ErrNotExist) {
			if err := mkdirSynced(filepath.Join(root, m.info.UUID)); err != nil {
				return fmt.Errorf("keyserver: %w", err)
			}
		}
	}
	return nil
}

func (s *Server) persistState(st persistedState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := s.store.writeSealed(stateFile, b); err != nil {
		return fmt.Errorf("keyserver: persist state: %w", err)
	}
	return nil
}

func (s *Server) persistKey(m *mount, p *policy) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	defer clear(b)
	if err := s.store.writeSealed(keyRel(m.info.UUID, s.store.keyFileName(p.Name)), b); err != nil {
		return fmt.Errorf("keyserver: persist key: %w", err)
	}
	return nil
}

func (s *Server) shredMountDir(uuid string) error {
	dir := filepath.Join(s.store.dir, keysDir, uuid)
	files, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, f := range files {
		if !f.IsDir() {
			if err := shredFile(filepath.Join(dir, f.Name())); err != nil {
				return err
			}
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dir))
}

// Handler returns the HTTP handler serving /v1/.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Serve serves on ln until Shutdown, then returns http.ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error { return s.srv.Serve(ln) }

// ListenAndServe listens on addr (127.0.0.1:0 when empty), serves in a
// goroutine and returns the base URL, such as http://127.0.0.1:8200, once
// the listener is open. ctx bounds only the listening; the server runs
// until Shutdown.
func (s *Server) ListenAndServe(ctx context.Context, addr string) (string, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("keyserver: listen: %w", err)
	}
	go func() {
		if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("dev key server stopped serving", "err", err)
		}
	}()
	url := "http://" + ln.Addr().String()
	s.log.Info("dev key server listening", "addr", url)
	return url, nil
}

// RootToken is the token that authorizes every request.
func (s *Server) RootToken() string { return s.token }

// Requests is the number of HTTP requests received so far.
func (s *Server) Requests() uint64 { return s.requests.Load() }

// Shutdown stops serving, waits for requests in flight (until ctx is
// done, after which connections are closed), wipes the keys from memory
// and unlocks the state directory, which another Open may then use.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.mu.Lock()
	for _, m := range s.mounts {
		m.mu.Lock()
		m.gone = true
		for _, k := range m.keys {
			k.mu.Lock()
			if k.pol != nil {
				k.pol.wipe()
				k.pol = nil
			}
			k.mu.Unlock()
		}
		m.mu.Unlock()
	}
	s.mounts = map[string]*mount{}
	s.mu.Unlock()
	if uerr := unlockDir(s.store.lock); err == nil {
		err = uerr
	}
	s.log.Info("dev key server shut down")
	return err
}

// authorized reports whether tok is the root token, in constant time.
func (s *Server) authorized(tok string) bool {
	return tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.token)) == 1
}

// mountFor finds the mount with the longest path that prefixes rel.
func (s *Server) mountFor(rel string) (*mount, string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var best *mount
	for p, m := range s.mounts {
		if strings.HasPrefix(rel, p) || rel == strings.TrimSuffix(p, "/") {
			if best == nil || len(p) > len(best.info.Path) {
				best = m
			}
		}
	}
	if best == nil {
		return nil, ""
	}
	return best, strings.TrimPrefix(strings.TrimPrefix(rel, strings.TrimSuffix(best.info.Path, "/")), "/")
}

func (s *Server) mountList() []mountInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]mountInfo, 0, len(s.mounts))
	for _, m := range s.mounts {
		out = append(out, m.info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// enableMount adds a transit mount at path (with trailing slash).
func (s *Server) enableMount(path, description string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range s.mounts {
		if strings.HasPrefix(path, p) || strings.HasPrefix(p, path) {
			return userError(fmt.Sprintf("path is already in use at %s", p))
		}
	}
	info := mountInfo{Path: path, UUID: newUUID(), Accessor: "transit_" + randomID(8), Description: description, Created: time.Now().UTC()}
	if err := mkdirSynced(filepath.Join(s.store.dir, keysDir, info.UUID)); err != nil {
		return err
	}
	next := s.state
	next.Mounts = append(append([]mountInfo{}, s.state.Mounts...), info)
	if err := s.persistState(next); err != nil {
		return err
	}
	s.state = next
	s.mounts[path] = &mount{info: info, keys: map[string]*key{}}
	s.log.Info("dev key server enabled a transit mount", "path", path)
	return nil
}

// disableMount removes a mount and shreds its keys. The mount table is
// persisted first: a crash in between leaves an orphan directory that the
// next Open shreds.
func (s *Server) disableMount(path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.mounts[path]
	if m == nil {
		return nil
	}
	next := s.state
	next.Mounts = nil
	for _, info := range s.state.Mounts {
		if info.Path != path {
			next.Mounts = append(next.Mounts, info)
		}
	}
	if err := s.persistState(next); err != nil {
		return err
	}
	s.state = next
	delete(s.mounts, path)
	m.mu.Lock()
	m.gone = true
	for name, k := range m.keys {
		k.mu.Lock()
		if k.pol != nil {
			k.pol.wipe()
			k.pol = nil
		}
		k.mu.Unlock()
		delete(m.keys, name)
	}
	m.mu.Unlock()
	s.log.Info("dev key server disabled a transit mount", "path", path)
	return s.shredMountDir(m.info.UUID)
}

// Names of transit keys: Vault's framework.GenericNameRegex.
var nameRE = regexp.MustCompile(`^\w(([\w.@-]+)?\w)?$`)

func validName(n string) bool { return nameRE.MatchString(n) }

var mountRE = regexp.MustCompile(`^[\w.@-]+(/[\w.@-]+)*/$`)

func validMountPath(p string) bool {
	if !mountRE.MatchString(p) {
		return false
	}
	for _, seg := range strings.Split(strings.TrimSuffix(p, "/"), "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func validUUID(u string) bool { return uuidRE.MatchString(u) }

func newUUID() string {
	b := randomBytes(16)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// randomID returns n uniformly random base62 characters.
func randomID(n int) string {
	out := make([]byte, 0, n)
	var buf [1]byte
	for len(out) < n {
		_, _ = rand.Read(buf[:])
		if buf[0] < 248 { // 248 = 4*62: reject to stay uniform
			out = append(out, base62[buf[0]%62])
		}
	}
	return string(out)
}

// newToken makes a token shaped like Vault's service tokens.
func newToken() string { return "hvs." + randomID(24) }
