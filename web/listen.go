package web

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ShutdownTimeout is how long ListenAndServe and Serve wait for requests in
// flight once their context is done.
const ShutdownTimeout = 10 * time.Second

// ListenAndServe serves on addr until ctx is done, then shuts down
// gracefully. It returns nil after a graceful shutdown.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves everything (ServeHTTP) on ln until ctx is done.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return s.ServeHandler(ctx, ln, s)
}

// ServeHandler serves h (ServeHTTP, PublicHandler or AdminHandler) on ln
// (which it closes) until ctx is done. The timeouts keep slow or idle
// clients from holding connections: a recipient's page and its POST are
// small.
func (s *Server) ServeHandler(ctx context.Context, ln net.Listener, h http.Handler) error {
	return s.ServeHandlerTLS(ctx, ln, h, nil)
}

// ServeHandlerTLS is ServeHandler speaking TLS with tc (HTTP/2 and
// HTTP/1.1); a nil tc serves plain HTTP.
func (s *Server) ServeHandlerTLS(ctx context.Context, ln net.Listener, h http.Handler, tc *tls.Config) error {
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() {
		if tc != nil {
			hs.TLSConfig = tc.Clone()
			errc <- hs.ServeTLS(ln, "", "")
			return
		}
		errc <- hs.Serve(ln)
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	err := hs.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("shut down http: %w", err)
	}
	return nil
}
