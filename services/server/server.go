// Package server is Custos's HTTP API (docs/openapi.yaml): event ingestion, decisions,
// replay, proofs, subject state and export, the transfer register, rights,
// tokens, health and metrics.
package server

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"custos.dev/ledger"
	"custos.dev/services/auth"
)

// MaxBody is the largest request body accepted (docs/schemas/).
const MaxBody = 1 << 20

// Config wires a Server.
type Config struct {
	Ledger   *ledger.Ledger
	Tokens   *auth.Store
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// RatePerToken is the sustained requests per second per token; Burst
	// its burst. Zero means 500/s with a burst of 1000.
	RatePerToken float64
	Burst        int
	// Ready reports extra readiness checks (NATS, key service, policy).
	Ready func(ctx context.Context) map[string]Check
	// Policies reloads the policy set on an admin's request; nil: the
	// endpoint answers that this server has no reloadable set.
	Policies PolicyReloader
}

// PolicyReloader loads the policy directory now and activates it, recording
// on the ledger who asked (by). It reports the active revision and whether
// it changed.
type PolicyReloader interface {
	ReloadPolicy(ctx context.Context, by string) (revision string, activated bool, err error)
	// InstallBundle verifies and loads an uploaded OPA bundle, makes it the
	// configured set (so that a restart keeps it) and activates it.
	InstallBundle(ctx context.Context, bundle []byte, by string) (revision string, activated bool, err error)
}

// DefaultRatePerToken is the sustained requests per second a token may make
// when none is configured; bursts of twice that pass.
const DefaultRatePerToken = 500

// Check is one readiness check's result.
type Check struct {
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// Server serves the API.
type Server struct {
	cfg     Config
	l       *ledger.Ledger
	tokens  *auth.Store
	log     *slog.Logger
	metrics *metrics
	mux     *http.ServeMux

	limMu    sync.Mutex
	limiters map[string]*rate.Limiter
}

type metrics struct {
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	authFail *prometheus.CounterVec
	overdue  prometheus.GaugeFunc
}

// New builds the API handler.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RatePerToken == 0 {
		cfg.RatePerToken, cfg.Burst = DefaultRatePerToken, 2*DefaultRatePerToken
	}
	s := &Server{cfg: cfg, l: cfg.Ledger, tokens: cfg.Tokens, log: cfg.Logger, limiters: map[string]*rate.Limiter{}}
	s.metrics = &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custos_http_requests_total", Help: "HTTP requests by route and status class."}, []string{"route", "status"}),
		errors:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custos_http_errors_total", Help: "HTTP error answers by error code."}, []string{"code"}),
		authFail: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custos_auth_failures_total", Help: "Refused authentications by kind (unauthorized, forbidden)."}, []string{"kind"}),
	}
	s.metrics.overdue = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "custos_rights_requests_overdue", Help: "Open rights requests past their deadline."}, func() float64 {
		return float64(len(s.rights("overdue")))
	})
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(s.metrics.requests, s.metrics.errors, s.metrics.authFail, s.metrics.overdue)
	}
	s.routes()
	return s
}

func (s *Server) routes() {
	m := http.NewServeMux()
	s.mux = m
	m.Handle("POST /v1/events", s.authed(auth.RoleEmitter, s.handleEmit))
	m.Handle("POST /v1/decisions", s.authed(auth.RoleEmitter, s.handleDecide))
	m.Handle("GET /v1/events", s.authed(auth.RoleAuditor, s.handleReplay))
	m.Handle("GET /v1/subjects/{subject}/state", s.authed(auth.RoleAuditor, s.handleState))
	m.Handle("GET /v1/subjects/{subject}/export", s.authed(auth.RoleAdmin, s.handleExport))
	m.Handle("GET /v1/subjects/{subject}/consents", s.authed(auth.RoleAuditor, s.handleConsents))
	m.HandleFunc("GET /contexts/iso27560-v1.jsonld", handleContext)
	m.Handle("GET /v1/transfers", s.authed(auth.RoleAuditor, s.handleTransfers))
	m.Handle("GET /v1/rights", s.authed(auth.RoleAuditor, s.handleRights))
	m.Handle("GET /v1/checkpoint", s.authed(auth.RoleAuditor, s.handleCheckpoint))
	m.Handle("GET /v1/checkpoints", s.authed(auth.RoleAuditor, s.handleCheckpoints))
	m.Handle("GET /v1/checkpoint/key", s.authed(auth.RoleAuditor, s.handleKey))
	m.Handle("GET /v1/proofs/inclusion", s.authed(auth.RoleAuditor, s.handleInclusion))
	m.Handle("GET /v1/proofs/inclusions", s.authed(auth.RoleAuditor, s.handleInclusions))
	m.Handle("GET /v1/proofs/consistency", s.authed(auth.RoleAuditor, s.handleConsistency))
	m.Handle("GET /v1/policy", s.authed(auth.RoleAuditor, s.handlePolicy))
	m.Handle("POST /v1/policy/reload", s.authed(auth.RolePolicy, s.handlePolicyReload))
	m.Handle("POST /v1/policy/whatif", s.authed(auth.RolePolicy, s.handleWhatIf))
	m.Handle("PUT /v1/policy", s.authed(auth.RolePolicy, s.handlePolicyInstall))
	m.Handle("POST /v1/tokens", s.authed(auth.RoleAdmin, s.handleTokenCreate))
	m.Handle("GET /v1/tokens", s.authed(auth.RoleAdmin, s.handleTokenList))
	m.Handle("DELETE /v1/tokens/{id}", s.authed(auth.RoleAdmin, s.handleTokenRevoke))
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	m.HandleFunc("GET /readyz", s.handleReady)
	if s.cfg.Registry != nil {
		m.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	}
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if allow := s.allowedMethods(r); allow != "" {
			w.Header().Set("Allow", allow)
			s.writeError(w, r, errorf(CodeMethod, "use "+allow+" on this path"))
			return
		}
		s.writeError(w, r, errorf(CodeNotFound, "no such endpoint"))
	})
}

// allowedMethods lists the methods a path is served with, "" when none: the
// catch-all route would otherwise hide the mux's own 405.
func (s *Server) allowedMethods(r *http.Request) string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	return strings.Join(allow, ", ")
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	started := time.Now()
	sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	s.mux.ServeHTTP(sw, r)
	_, pattern := s.mux.Handler(r)
	if pattern == "" || pattern == "/" {
		pattern = "other"
	}
	s.metrics.requests.WithLabelValues(pattern, classOf(sw.code)).Inc()
	// The route pattern, never the path or the query: both may carry a
	// subject identifier.
	s.log.Info("request", "method", r.Method, "route", pattern, "status", sw.code, "ms", float64(time.Since(started).Microseconds())/1000)
}

func classOf(code int) string {
	return string(rune('0'+code/100)) + "xx"
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

type tokenKey struct{}

// tokenFrom returns the authenticated token of a request.
func tokenFrom(r *http.Request) *auth.Token {
	t, _ := r.Context().Value(tokenKey{}).(*auth.Token)
	return t
}

// authed checks the bearer token, the role and the token's rate limit.
func (s *Server) authed(role string, h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, err := s.tokens.Check(bearer(r.Header.Get("Authorization")))
		if err != nil {
			s.metrics.authFail.WithLabelValues("unauthorized").Inc()
			s.writeError(w, r, err)
			return
		}
		if !t.Allows(role) {
			s.metrics.authFail.WithLabelValues("forbidden").Inc()
			s.writeError(w, r, errorf(CodeForbidden, "this token's role ("+t.Role+") may not use this endpoint"))
			return
		}
		if !s.limiter(t.ID).Allow() {
			s.writeError(w, r, errorf(CodeRateLimited, "rate limit exceeded for this token"))
			return
		}
		s.log.Debug("request", "method", r.Method, "route", r.Pattern, "token_id", t.ID, "role", t.Role)
		if err := h(w, r.WithContext(context.WithValue(r.Context(), tokenKey{}, t))); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// bearer is the token of an Authorization header in the Bearer scheme (RFC
// 6750; the scheme name is case-insensitive), "" for any other: a bare
// token is not accepted.
func bearer(h string) string {
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

func (s *Server) limiter(id string) *rate.Limiter {
	s.limMu.Lock()
	defer s.limMu.Unlock()
	l := s.limiters[id]
	if l == nil {
		l = rate.NewLimiter(rate.Limit(s.cfg.RatePerToken), s.cfg.Burst)
		s.limiters[id] = l
	}
	return l
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	checks := map[string]Check{}
	if s.cfg.Ready != nil {
		checks = s.cfg.Ready(ctx)
	}
	ok := true
	for _, c := range checks {
		ok = ok && c.OK
	}
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	// The details (addresses, refused policy sources) are for operators:
	// without a valid token only the verdict of each check is shown.
	if _, err := s.tokens.Check(bearer(r.Header.Get("Authorization"))); err != nil {
		for name, c := range checks {
			c.Detail = ""
			checks[name] = c
		}
	}
	writeJSON(w, code, map[string]any{"ready": ok, "checks": checks})
}

// Limits on slow clients (docs/threat-model.md). A client that takes
// longer to send its headers, or its whole request, is disconnected; an
// idle keep-alive connection is closed.
const (
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	MaxHeaderBytes           = 64 << 10
)

// HTTPOption adjusts the http.Server HTTPServer builds.
type HTTPOption func(*http.Server)

// WithReadHeaderTimeout sets how long a client may take to send its
// request line and headers.
func WithReadHeaderTimeout(d time.Duration) HTTPOption {
	return func(s *http.Server) { s.ReadHeaderTimeout = d }
}

// WithReadTimeout sets how long a client may take to send its whole
// request, body included.
func WithReadTimeout(d time.Duration) HTTPOption {
	return func(s *http.Server) { s.ReadTimeout = d }
}

// HTTPServer wraps the handler with the timeouts that protect against slow
// clients. There is no write timeout: replays and audit exports stream for
// as long as the ledger is long.
func HTTPServer(addr string, h http.Handler, opts ...HTTPOption) *http.Server {
	s := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		ReadTimeout:       DefaultReadTimeout,
		IdleTimeout:       DefaultIdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
	for _, o := range opts {
		o(s)
	}
	return s
}
