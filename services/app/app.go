// Package app assembles a running Custos: NATS (embedded or external), the
// key service (Vault, or the embedded dev key server), the policy engine,
// the ledger and the HTTP API. `custos serve` is a thin shell around Start;
// tests start the very same thing in-process.
package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"custos.dev/ledger"
	"custos.dev/ledger/atomicfile"
	"custos.dev/ledger/keys"
	"custos.dev/ledger/keys/keyserver"
	"custos.dev/ledger/policy"
	"custos.dev/ledger/record"
	"custos.dev/policies"
	"custos.dev/services/auth"
	"custos.dev/services/natsd"
	"custos.dev/services/server"
)

// Config is everything `custos serve` takes.
type Config struct {
	DataDir        string
	Listen         string
	NATSURL        string // external NATS; empty: embedded
	NATSCreds      string // file with {"url","user","password"} for external NATS
	NATSListen     string
	NoSync         bool
	PoliciesDir    string // empty: the built-in set
	PolicyPoll     time.Duration
	PolicyDeadline time.Duration // one evaluation; 0: policy.DefaultDeadline
	// AllowUntestedPolicy accepts a policy set without Rego tests.
	AllowUntestedPolicy bool
	// PolicyVerificationKey is a PEM public key: PoliciesDir must then be
	// an OPA bundle signed by it, under PolicyKeyID.
	PolicyVerificationKey string
	PolicyKeyID           string
	// PolicyBundleURL is a bundle server's URL for the policy bundle,
	// polled every PolicyPoll (instead of PoliciesDir).
	PolicyBundleURL    string
	VaultAddr          string // empty: embedded dev key server
	VaultToken         string
	VaultRoleID        string
	VaultSecretID      string
	CheckpointInterval time.Duration
	RetentionInterval  time.Duration
	KeyCacheTTL        time.Duration
	Replicas           int
	PlacementTags      []string
	Origin             string
	RatePerToken       float64
	Clock              func() time.Time
	Logger             *slog.Logger
}

// App is a running Custos.
type App struct {
	cfg        Config
	log        *slog.Logger
	nats       *natsd.Server
	keysrv     *keyserver.Server
	nc         *nats.Conn
	Ledger     *ledger.Ledger
	Tokens     *auth.Store
	Keys       *keys.Client
	Engine     *policy.Engine
	Registry   *prometheus.Registry
	httpSrv    *http.Server
	ln         net.Listener
	cancel     context.CancelFunc
	bg         chan struct{}
	policyErr  atomic.Pointer[string] // the last refused reload, nil after a good one
	bundleInfo atomic.Pointer[policy.BundleInfo]
	bundleSrv  *policy.BundleServer
	AdminToken string
	URL        string // the API's base URL
	NATSURL    string
	VaultURL   string
}

// The app's own defaults, declared once (the ledger's and the server's are
// theirs: ledger.Default*, server.DefaultRatePerToken).
const (
	DefaultDataDir           = "./custos-data"
	DefaultListen            = "127.0.0.1:8080"
	DefaultNATSListen        = "127.0.0.1:4222"
	DefaultRetentionInterval = time.Minute
	DefaultPolicyPoll        = time.Second
)

func (c *Config) defaults() {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.NATSListen == "" {
		c.NATSListen = DefaultNATSListen
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = ledger.DefaultCheckpointInterval
	}
	if c.RetentionInterval == 0 {
		c.RetentionInterval = DefaultRetentionInterval
	}
	if c.PolicyPoll == 0 {
		c.PolicyPoll = DefaultPolicyPoll
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
}

// Start brings Custos up and returns once the API is listening and the
// ledger has been replayed. Close stops it.
func Start(ctx context.Context, cfg Config) (_ *App, err error) {
	cfg.defaults()
	a := &App{cfg: cfg, log: cfg.Logger, Registry: prometheus.NewRegistry(), bg: make(chan struct{})}
	defer func() {
		if err != nil {
			a.teardown()
		}
	}()
	a.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	if err := a.startNATS(); err != nil {
		return nil, err
	}
	if err := a.startKeys(ctx); err != nil {
		return nil, err
	}
	if err := a.startPolicy(ctx); err != nil {
		return nil, err
	}
	var placement *jetstream.Placement
	if len(cfg.PlacementTags) > 0 {
		placement = &jetstream.Placement{Tags: cfg.PlacementTags}
	}
	a.Ledger, err = ledger.Open(ctx, ledger.Options{
		Conn: a.nc, Keys: a.Keys, Policy: a.Engine, Origin: cfg.Origin,
		Stream:             ledger.StreamOptions{Replicas: cfg.Replicas, Placement: placement},
		CheckpointInterval: cfg.CheckpointInterval, KeyCacheTTL: cfg.KeyCacheTTL,
		Integrate: true, Clock: cfg.Clock, Logger: cfg.Logger, Metrics: ledger.NewMetrics(a.Registry),
		IndexDir: filepath.Join(cfg.DataDir, "index"),
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	if a.nats != nil {
		if err := a.nats.EnsureAuditMirrors(ctx); err != nil {
			return nil, err
		}
	}
	if err := atomicfile.Write(filepath.Join(cfg.DataDir, "verifier.key"), []byte(a.Ledger.VerifierKey()+"\n"), 0o644); err != nil {
		return nil, err
	}
	a.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "custos_policy_timeouts_total", Help: "Policy evaluations stopped at their deadline (each a POLICY_ERROR deny).",
	}, func() float64 { n, _ := a.Engine.Timeouts(time.Now()); return float64(n) }))
	a.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "custos_stream_lag", Help: "LEDGER messages not yet folded into this process's tree and state.",
	}, a.streamLag))
	if err := a.recordActivation(ctx, "startup"); err != nil {
		return nil, err
	}
	tokens, err := a.Ledger.Bucket(ctx, auth.Bucket)
	if err != nil {
		return nil, err
	}
	if a.Tokens, err = auth.Open(ctx, tokens, cfg.Clock); err != nil {
		return nil, err
	}
	if err := a.bootstrapAdmin(ctx); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	go a.background(runCtx)
	return a, a.startHTTP()
}

func (a *App) startNATS() error {
	if a.cfg.NATSURL != "" {
		opts := []nats.Option{nats.Name("custos"), nats.MaxReconnects(-1)}
		if a.cfg.NATSCreds != "" {
			c, err := readCreds(a.cfg.NATSCreds)
			if err != nil {
				return err
			}
			opts = append(opts, nats.UserInfo(c.User, c.Password))
		}
		nc, err := nats.Connect(a.cfg.NATSURL, opts...)
		if err != nil {
			return fmt.Errorf("nats %s: %w", a.cfg.NATSURL, err)
		}
		a.nc, a.NATSURL = nc, a.cfg.NATSURL
		return nil
	}
	if a.cfg.NoSync {
		a.log.Warn("fsync per message is OFF: acknowledged events can be lost on power failure")
	}
	srv, err := natsd.Start(natsd.Config{Dir: a.cfg.DataDir, Listen: a.cfg.NATSListen, NoSync: a.cfg.NoSync})
	if err != nil {
		return err
	}
	a.nats = srv
	nc, err := srv.Custos.Connect("custos")
	if err != nil {
		return err
	}
	a.nc, a.NATSURL = nc, srv.URL()
	a.log.Info("embedded NATS JetStream started", "url", srv.URL(), "store", filepath.Join(a.cfg.DataDir, "nats"),
		"auditor_credentials", filepath.Join(a.cfg.DataDir, "nats-auditor.json"))
	return nil
}

func (a *App) startKeys(ctx context.Context) error {
	addr, token := a.cfg.VaultAddr, a.cfg.VaultToken
	if addr == "" {
		ks, err := keyserver.Open(filepath.Join(a.cfg.DataDir, "keys"), keyserver.WithLogger(a.log))
		if err != nil {
			return fmt.Errorf("dev key server: %w", err)
		}
		a.keysrv = ks
		if addr, err = ks.ListenAndServe(ctx, "127.0.0.1:0"); err != nil {
			return fmt.Errorf("dev key server: %w", err)
		}
		token = ks.RootToken()
		a.log.Warn("using the embedded DEV key server (Vault transit API, not a Vault); set --vault-addr or VAULT_ADDR for production",
			"addr", addr, "state", filepath.Join(a.cfg.DataDir, "keys"))
	}
	c, err := keys.New(keys.Config{Address: addr, Token: token, RoleID: a.cfg.VaultRoleID, SecretID: a.cfg.VaultSecretID})
	if err != nil {
		return err
	}
	if err := c.Login(ctx); err != nil {
		return err
	}
	if err := c.Health(ctx); err != nil {
		return fmt.Errorf("key service at %s: %w", addr, err)
	}
	a.Keys, a.VaultURL = c, addr
	return nil
}

func (a *App) policyFS() fs.FS {
	if a.cfg.PoliciesDir != "" {
		return os.DirFS(a.cfg.PoliciesDir)
	}
	return policies.FS()
}

// reloader is the app as the server's PolicyReloader when it decides with a
// policy directory.
func (a *App) reloader() server.PolicyReloader {
	if a.cfg.PoliciesDir == "" {
		return nil
	}
	return policyReloader{a}
}

type policyReloader struct{ a *App }

// ReloadPolicy loads the directory now; a refused set is an invalid
// request naming why, and the active set stays.
func (p policyReloader) ReloadPolicy(ctx context.Context, by string) (string, bool, error) {
	a := p.a
	set, err := a.loadSet(ctx)
	if err != nil {
		return "", false, &server.Error{Code: server.CodeInvalidRequest, Field: "policies", Message: err.Error()}
	}
	a.policyErr.Store(nil)
	if !a.Engine.Activate(set) {
		return set.Revision(), false, nil
	}
	a.log.Info("policy set activated", "revision", set.Revision(), "by", by)
	return set.Revision(), true, a.recordActivation(ctx, by)
}

// InstallBundle loads an uploaded bundle (verified when a key is set),
// replaces the configured bundle file with it, so that a restart decides
// with it too, and activates it. Only a server started on a bundle file
// installs bundles: a directory is the operator's to change.
func (p policyReloader) InstallBundle(ctx context.Context, b []byte, by string) (string, bool, error) {
	a := p.a
	if !a.bundled() {
		return "", false, &server.Error{Code: server.CodeInvalidRequest, Field: "policies",
			Message: "this server decides with a policy directory; start it with --policies FILE.tar.gz to install bundles"}
	}
	keys, err := a.verificationKeys()
	if err != nil {
		return "", false, err
	}
	set, info, err := policy.LoadBundle(ctx, bytes.NewReader(b), keys, a.loadOptions()...)
	if err != nil {
		return "", false, &server.Error{Code: server.CodeInvalidRequest, Field: "body", Message: err.Error()}
	}
	if err := atomicfile.Write(a.cfg.PoliciesDir, b, 0o644); err != nil {
		return "", false, fmt.Errorf("%w: keep the bundle: %v", ledger.ErrUnavailable, err)
	}
	a.bundleInfo.Store(&info)
	a.policyErr.Store(nil)
	if !a.Engine.Activate(set) {
		return set.Revision(), false, nil
	}
	a.log.Info("policy bundle installed", "revision", set.Revision(), "bundle_revision", info.Revision, "signer", info.Signer, "by", by)
	return set.Revision(), true, a.recordActivation(ctx, by)
}

func (a *App) loadOptions() []policy.LoadOption {
	if a.cfg.AllowUntestedPolicy {
		return []policy.LoadOption{policy.AllowUntested()}
	}
	return nil
}

// bundled reports whether --policies names an OPA bundle file rather than a
// directory.
func (a *App) bundled() bool {
	if a.cfg.PoliciesDir == "" {
		return false
	}
	info, err := os.Stat(a.cfg.PoliciesDir)
	return err == nil && !info.IsDir()
}

// loadSet loads the configured set: the built-in one, a directory, or an
// OPA bundle (verified when a verification key is set).
func (a *App) loadSet(ctx context.Context) (*policy.Set, error) {
	if !a.bundled() {
		if a.cfg.PolicyVerificationKey != "" {
			return nil, fmt.Errorf("%w: a policy verification key needs --policies to name a bundle file", policy.ErrInvalidPolicy)
		}
		a.bundleInfo.Store(nil)
		return policy.Load(ctx, a.policyFS(), a.loadOptions()...)
	}
	f, err := os.Open(a.cfg.PoliciesDir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	keys, err := a.verificationKeys()
	if err != nil {
		return nil, err
	}
	set, info, err := policy.LoadBundle(ctx, f, keys, a.loadOptions()...)
	if err != nil {
		return nil, err
	}
	a.bundleInfo.Store(&info)
	return set, nil
}

// startBundleServer fetches the first bundle from the bundle server: Custos
// does not start without it, rather than decide with another set.
func (a *App) startBundleServer(ctx context.Context) (*policy.Set, error) {
	if a.cfg.PoliciesDir != "" {
		return nil, fmt.Errorf("%w: --policies and --policy-bundle-url exclude each other", policy.ErrInvalidPolicy)
	}
	keys, err := a.verificationKeys()
	if err != nil {
		return nil, err
	}
	a.bundleSrv = &policy.BundleServer{URL: a.cfg.PolicyBundleURL, Keys: keys, Opts: a.loadOptions()}
	set, info, err := a.bundleSrv.Fetch(ctx)
	if err != nil {
		return nil, err
	}
	a.bundleInfo.Store(&info)
	return set, nil
}

// pollBundleServer activates each new bundle the bundle server serves.
func (a *App) pollBundleServer(ctx context.Context) {
	t := time.NewTicker(a.cfg.PolicyPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		set, info, err := a.bundleSrv.Fetch(ctx)
		switch {
		case errors.Is(err, policy.ErrNotModified):
			continue
		case err != nil:
			msg := err.Error()
			a.policyErr.Store(&msg)
			a.log.Error("policy bundle refused; the active set stays", "err", err)
			continue
		}
		a.policyErr.Store(nil)
		a.bundleInfo.Store(&info)
		if !a.Engine.Activate(set) {
			continue
		}
		a.log.Info("policy bundle activated", "revision", set.Revision(), "bundle_revision", info.Revision, "signer", info.Signer)
		if err := a.recordActivation(ctx, "bundle-server"); err != nil {
			a.log.Error("record policy activation", "err", err)
		}
	}
}

// verificationKeys are the keys a bundle must be signed with, nil when
// none is configured.
func (a *App) verificationKeys() (*bundle.VerificationConfig, error) {
	if a.cfg.PolicyVerificationKey == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(a.cfg.PolicyVerificationKey)
	if err != nil {
		return nil, fmt.Errorf("policy verification key: %w", err)
	}
	id := a.cfg.PolicyKeyID
	if id == "" {
		id = DefaultPolicyKeyID
	}
	return policy.VerificationKeys(id, pem), nil
}

// DefaultPolicyKeyID is the key id a policy bundle is signed under when
// --policy-key-id is not given.
const DefaultPolicyKeyID = "custos-policy"

func (a *App) startPolicy(ctx context.Context) error {
	var set *policy.Set
	var err error
	if a.cfg.PolicyBundleURL != "" {
		set, err = a.startBundleServer(ctx)
	} else {
		set, err = a.loadSet(ctx)
	}
	if err != nil {
		return fmt.Errorf("policies: %w", err)
	}
	a.Engine = policy.NewEngine(set, policy.WithDeadline(a.cfg.PolicyDeadline))
	a.log.Info("policy set active", "revision", set.Revision(), "dir", a.cfg.PoliciesDir)
	return nil
}

// recordActivation appends custos.policy.activated when the active
// revision is not the one the ledger last recorded.
func (a *App) recordActivation(ctx context.Context, by string) error {
	rev := a.Engine.Active().Revision()
	prev := a.Ledger.View().PolicyRevision()
	if prev == rev {
		return nil
	}
	act := record.PolicyActivated{Revision: rev, By: by, Previous: prev}
	if info := a.bundleInfo.Load(); info != nil {
		act.BundleRevision, act.Signer = info.Revision, info.Signer
	}
	_, err := a.Ledger.AppendInternal(ctx, "", record.TypePolicyActivated, "policy-"+strings.TrimPrefix(rev, "sha256:")+"-after-"+strings.TrimPrefix(prev, "sha256:"), act)
	return err
}

func (a *App) bootstrapAdmin(ctx context.Context) error {
	path := filepath.Join(a.cfg.DataDir, "admin.token")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		secret, err := auth.NewSecret()
		if err != nil {
			return err
		}
		if _, err := a.Tokens.Import(ctx, secret, auth.RoleAdmin); err != nil {
			return err
		}
		if err := atomicfile.Write(path, []byte(secret+"\n"), 0o600); err != nil {
			return err
		}
		a.AdminToken = secret
		a.log.Info("admin token written", "path", path)
		return nil
	}
	if err != nil {
		return err
	}
	secret := strings.TrimSpace(string(b))
	switch _, err = a.Tokens.Import(ctx, secret, auth.RoleAdmin); {
	case errors.Is(err, auth.ErrRevoked):
		// A revocation lasts: the file is left for the operator to remove.
		a.log.Warn("the bootstrap admin token was revoked; it stays revoked (remove admin.token)", "path", path)
		return nil
	case err != nil:
		return err
	}
	a.AdminToken = secret
	return nil
}

func (a *App) startHTTP() error {
	ln, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return err
	}
	a.ln = ln
	a.URL = "http://" + ln.Addr().String()
	h := server.New(server.Config{
		Ledger: a.Ledger, Tokens: a.Tokens, Logger: a.log, Registry: a.Registry,
		RatePerToken: a.cfg.RatePerToken, Burst: int(a.cfg.RatePerToken * 2), Ready: a.ready,
		Policies: a.reloader(),
	})
	a.httpSrv = server.HTTPServer(a.cfg.Listen, h)
	go func() {
		if err := a.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("http server", "err", err)
		}
	}()
	a.log.Info("custos API listening", "url", a.URL)
	return nil
}

func (a *App) ready(ctx context.Context) map[string]server.Check {
	checks := map[string]server.Check{}
	if a.nc.Status() == nats.CONNECTED {
		checks["nats"] = server.Check{OK: true, Detail: a.NATSURL}
	} else {
		checks["nats"] = server.Check{OK: false, Detail: a.nc.Status().String()}
	}
	if err := a.Keys.Health(ctx); err != nil {
		checks["keys"] = server.Check{OK: false, Detail: err.Error()}
	} else {
		checks["keys"] = server.Check{OK: true, Detail: a.VaultURL}
	}
	pc := server.Check{OK: true, Detail: a.Engine.Active().Revision()}
	if msg := a.policyErr.Load(); msg != nil {
		pc.Detail += "; last reload refused: " + *msg
	}
	if n, repeated := a.Engine.Timeouts(time.Now()); repeated {
		pc.OK = false
		pc.Detail += fmt.Sprintf("; evaluations keep exceeding the %s deadline (%d so far)", a.Engine.Deadline(), n)
	}
	checks["policy"] = pc
	cp := server.Check{OK: true}
	if err := a.Ledger.CheckpointError(); err != nil {
		cp = server.Check{OK: false, Detail: err.Error()}
	} else if l := a.Ledger.Latest(); l != nil {
		cp.Detail = fmt.Sprintf("tree size %d", l.Size)
	}
	if a.Ledger.IsIntegrator() {
		cp.Detail += " (this process signs)"
	}
	checks["checkpoints"] = cp
	return checks
}

func (a *App) streamLag() float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	info, err := a.Ledger.Stream().Info(ctx)
	if err != nil {
		return -1
	}
	return float64(info.State.LastSeq) - float64(a.Ledger.View().Applied())
}

// background runs the policy watcher and the retention worker.
func (a *App) background(ctx context.Context) {
	defer close(a.bg)
	done := make(chan struct{})
	if a.bundleSrv != nil {
		go func() {
			defer close(done)
			a.pollBundleServer(ctx)
		}()
	} else if a.cfg.PoliciesDir != "" && !a.bundled() {
		go func() {
			defer close(done)
			policy.WatchFrom(ctx, a.cfg.PoliciesDir, a.Engine.Active().Revision(), a.cfg.PolicyPoll, func(s *policy.Set) {
				a.policyErr.Store(nil)
				if !a.Engine.Activate(s) {
					return // the same revision is already active
				}
				a.log.Info("policy set activated", "revision", s.Revision())
				if err := a.recordActivation(ctx, "reload"); err != nil {
					a.log.Error("record policy activation", "err", err)
				}
			}, func(err error) {
				msg := err.Error()
				a.policyErr.Store(&msg)
				a.log.Error("policy set refused; the active set stays", "err", err)
			}, a.loadOptions()...)
		}()
	} else {
		close(done)
	}
	a.Ledger.RunRetention(ctx, a.cfg.RetentionInterval)
	<-done
}

// Close shuts down gracefully: the API stops taking requests and finishes
// those in flight, the ledger finishes appends, then NATS drains.
func (a *App) Close(ctx context.Context) error {
	if a.httpSrv != nil {
		_ = a.httpSrv.Shutdown(ctx)
	}
	if a.cancel != nil {
		a.cancel()
		<-a.bg
	}
	return a.teardown()
}

func (a *App) teardown() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if a.Ledger != nil {
		_ = a.Ledger.Close(ctx)
	}
	if a.Tokens != nil {
		a.Tokens.Close()
	}
	if a.nc != nil {
		closed := make(chan struct{})
		a.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
		if err := a.nc.Drain(); err != nil {
			a.nc.Close()
		}
		select {
		case <-closed:
		case <-ctx.Done():
			a.nc.Close()
		}
	}
	if a.nats != nil {
		a.nats.Shutdown()
	}
	if a.keysrv != nil {
		_ = a.keysrv.Shutdown(ctx)
	}
	return nil
}

// NATSServer is the embedded NATS server, nil with --nats-url.
func (a *App) NATSServer() *natsd.Server { return a.nats }

// KeyServer is the embedded dev key server, nil with a real Vault.
func (a *App) KeyServer() *keyserver.Server { return a.keysrv }

// Conn is Custos's NATS connection.
func (a *App) Conn() *nats.Conn { return a.nc }

func readCreds(path string) (natsd.Credentials, error) {
	var c natsd.Credentials
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal(b, &c)
}
