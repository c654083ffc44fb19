package web

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/repermit/repermit/templates"
	"github.com/repermit/repermit/token"
)

// Config configures a Server. Store and Signer are required; every other
// zero value means the default named beside it.
type Config struct {
	// Store is the system of record (see Store); Signer checks the links.
	Store  Store
	Signer *token.Signer

	// AdminToken is the bearer token /admin/* requires
	// (REPERMIT_ADMIN_TOKEN). Empty refuses every admin request.
	AdminToken string

	// Logger receives request failures; default slog.Default().
	Logger *slog.Logger
	// Now is the clock for deadlines and answer times; default time.Now.
	Now func() time.Time
	// Registry receives the metrics and is what /metrics serves; default a
	// new registry with the Go and process collectors.
	Registry *prometheus.Registry

	// IPMode is how much of the client address a consent record keeps;
	// default IPTruncate.
	IPMode IPMode
	// TrustedProxies are the reverse proxies (REPERMIT_TRUSTED_PROXIES)
	// whose X-Forwarded-For or Forwarded header is believed: the
	// right-most hop that is not one of them is the client, for the rate
	// limits and the consent records. Empty: the peer is the client.
	TrustedProxies []netip.Prefix

	// Hooks, if set, serves POST /hooks/… (ESP bounce and complaint
	// webhooks, package hooks), which authenticates each request itself.
	Hooks http.Handler

	// RequestTimeout bounds the Redis work of one request; past it the page
	// is a 503. Default 2s.
	RequestTimeout time.Duration
	// MaxBodyBytes limits POST bodies; default 8 KiB.
	MaxBodyBytes int64
	// RatePerSecond and RateBurst limit POSTs per client (an IPv4 address
	// or an IPv6 /64): default 1 a second with bursts of 20, which a
	// household or an office behind one NAT does not reach. A negative
	// RatePerSecond turns the limit off.
	RatePerSecond float64
	RateBurst     int
	// RateClients bounds the clients the limiter tracks; default 10000.
	RateClients int
	// CampaignCacheTTL is how long a campaign is cached in memory; default
	// 5s, negative turns the cache off. Pausing, cancelling and finishing
	// take effect on the pages after at most this long.
	CampaignCacheTTL time.Duration
	// LandedTTL is how long the recipient a landing page was made from is
	// kept for the answer posted from it (landedCache); default 10m,
	// negative turns it off.
	LandedTTL time.Duration

	// Pages holds the default page templates; default templates.Pages().
	// A campaign's TemplatesDir/pages overrides them file by file; a web
	// server that cannot read that directory uses the defaults.
	Pages fs.FS
}

// Server is the web front end. It is an http.Handler.
type Server struct {
	cfg       Config
	store     Store
	signer    *token.Signer
	log       *slog.Logger
	pages     *pageSet
	campaigns *campaignCache
	landed    *landedCache
	limiter   *limiter // nil: no limit
	// adminFailures counts wrong admin tokens per client.
	adminFailures *limiter
	metrics       *metrics
	css           []byte
	mux           *http.ServeMux
	// headers are the security headers every answer carries, their
	// values made once (see serve).
	headers []securityHeader
}

type securityHeader struct {
	key string   // in canonical form
	val []string // one value; shared by every answer, never modified
}

// securityHeaders returns the headers serve adds to every answer.
func securityHeaders() []securityHeader {
	var out []securityHeader
	for _, kv := range [][2]string{
		{"Content-Security-Policy", "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"},
		{"Referrer-Policy", "no-referrer"},
		{"X-Content-Type-Options", "nosniff"},
		{"X-Frame-Options", "DENY"},
		// Token pages must never be cached: a shared cache would show one
		// recipient's page to another. The stylesheet overrides this.
		{"Cache-Control", "no-store"},
	} {
		// The slice's capacity is 1, so a handler's Add appends to a
		// copy, never to the shared array.
		out = append(out, securityHeader{http.CanonicalHeaderKey(kv[0]), []string{kv[1]}})
	}
	return out
}

// New checks cfg, fills in its defaults and parses the templates.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("web: Config.Store is required")
	}
	if cfg.Signer == nil {
		return nil, errors.New("web: Config.Signer is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
		cfg.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	mode, err := ParseIPMode(string(cfg.IPMode))
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	cfg.IPMode = mode
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 2 * time.Second
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 8 << 10
	}
	if cfg.RatePerSecond == 0 {
		cfg.RatePerSecond = 1
	}
	if cfg.RateBurst <= 0 {
		cfg.RateBurst = 20
	}
	if cfg.RateClients <= 0 {
		cfg.RateClients = 10000
	}
	if cfg.CampaignCacheTTL == 0 {
		cfg.CampaignCacheTTL = 5 * time.Second
	}
	if cfg.LandedTTL == 0 {
		cfg.LandedTTL = 10 * time.Minute
	}
	if cfg.Pages == nil {
		cfg.Pages = templates.Pages()
	}

	s := &Server{
		cfg:       cfg,
		store:     cfg.Store,
		signer:    cfg.Signer,
		log:       cfg.Logger,
		campaigns: newCampaignCache(cfg.Store, cfg.CampaignCacheTTL),
		landed:    newLandedCache(cfg.LandedTTL),
	}
	if s.pages, err = newPageSet(cfg.Pages, cfg.Logger); err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	if s.css, err = fs.ReadFile(cfg.Pages, "style.css"); err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	if s.metrics, err = newMetrics(cfg.Registry); err != nil {
		return nil, fmt.Errorf("web: metrics: %w", err)
	}
	if cfg.RatePerSecond > 0 {
		s.limiter = newLimiter(cfg.RatePerSecond, cfg.RateBurst, cfg.RateClients)
	}
	s.adminFailures = newLimiter(1/AdminFailureInterval.Seconds(), AdminFailureBurst, cfg.RateClients)
	s.headers = securityHeaders()
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET "+token.ConfirmPath+"{token}", s.getConfirm)
	m.HandleFunc("POST "+token.ConfirmPath+"{token}", s.postConfirm)
	m.HandleFunc("GET "+token.UnsubscribePath+"{token}", s.getUnsubscribe)
	m.HandleFunc("POST "+token.UnsubscribePath+"{token}", s.postUnsubscribe)
	m.HandleFunc("GET /static/style.css", s.styleSheet)
	m.HandleFunc("GET /healthz", s.healthz)
	m.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelError)}))
	m.Handle("GET /admin/{$}", s.admin(s.adminCampaigns))
	m.Handle("GET /admin/campaigns", s.admin(s.adminCampaigns))
	m.Handle("GET /admin/campaigns/{id}", s.admin(s.adminCampaign))
	// Any other admin path: 401 before 404, so that the admin namespace
	// reveals nothing without the token.
	m.Handle("GET /admin/", s.admin(s.notFound))
	// Registered so that the mux does not redirect /admin to /admin/.
	m.Handle("GET /admin", s.admin(s.notFound))
	if s.cfg.Hooks != nil {
		m.Handle("POST /hooks/", s.cfg.Hooks)
	}
	m.HandleFunc("GET /", s.notFound)
	s.mux = m
}

// scope is the part of the site a handler serves.
type scope int

const (
	scopeAll    scope = iota // one listener for everything
	scopePublic              // the recipients' listener: no /admin, no /metrics
	scopeAdmin               // the admin listener: /admin, /metrics, /healthz
)

// adminPath reports whether p belongs on the admin listener.
func adminPath(p string) bool {
	return p == "/metrics" || p == "/admin" || strings.HasPrefix(p, "/admin/")
}

func (sc scope) serves(p string) bool {
	switch sc {
	case scopePublic:
		return !adminPath(p)
	case scopeAdmin:
		return adminPath(p) || p == "/healthz"
	}
	return true
}

type scopedHandler struct {
	s  *Server
	sc scope
}

func (h scopedHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.s.serve(w, r, h.sc) }

// PublicHandler serves the recipients: every page but /admin and /metrics,
// which answer 404 there. It is what faces the internet.
func (s *Server) PublicHandler() http.Handler { return scopedHandler{s, scopePublic} }

// AdminHandler serves /admin, /metrics and /healthz only, for a listener of
// their own (REPERMIT_ADMIN_ADDR).
func (s *Server) AdminHandler() http.Handler { return scopedHandler{s, scopeAdmin} }

// ServeHTTP serves everything, public and admin pages, on one listener.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.serve(w, r, scopeAll) }

// serve adds the security headers every answer carries and counts the
// request by route pattern, so that tokens never become metric labels.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, sc scope) {
	start := time.Now()
	// What Header().Set does, less a new one-string slice and a check of
	// the key's spelling per header and answer.
	h := w.Header()
	for _, sh := range s.headers {
		h[sh.key] = sh.val
	}
	sw := &statusWriter{ResponseWriter: w}
	if !cleanPath(r.URL.Path) {
		// The mux would redirect to the cleaned path; nothing here
		// redirects, and no link of ours has such a path.
		s.notFound(sw, r)
	} else if !sc.serves(r.URL.Path) {
		s.notFound(sw, r)
	} else {
		s.mux.ServeHTTP(sw, r)
	}
	route := r.Pattern
	if route == "" {
		route = "none"
	}
	code := sw.code
	if code == 0 {
		code = http.StatusOK
	}
	s.metrics.requests.WithLabelValues(route, statusText(code)).Inc()
	s.metrics.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
}

// statusText avoids strconv on the hot path for the usual codes.
func statusText(code int) string {
	switch code {
	case 200:
		return "200"
	case 404:
		return "404"
	case 410:
		return "410"
	}
	return fmt.Sprint(code)
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) styleSheet(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=86400")
	w.Write(s.css)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("healthz: redis does not answer", "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "redis unavailable")
		return
	}
	fmt.Fprintln(w, "ok")
}

// cleanPath reports whether p is in the form path.Clean leaves it, up to
// a trailing slash.
func cleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c == p
}

// root is the relative path from a request's path to the site root, so that
// pages find /static/style.css also when served under a path prefix.
func root(path string) string {
	n := strings.Count(path, "/") - 1
	if n <= 0 {
		return "./"
	}
	return strings.Repeat("../", n)
}
