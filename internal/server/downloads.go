package server

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/otter-ota/otter/internal/devicehttp"
)

// The download listener (--download-http) serves /dl/ alone, with
// fasthttp: a firmware download costs about half the CPU it costs through
// net/http (BENCHMARKS.md, "Downloads against nginx"). The API, the
// console and the device API stay on net/http, on --http: they need its
// streams (server-sent events), HTTP/2 and the routers built on it, which
// fasthttp does not serve. Sharing one port would mean sniffing every
// request before choosing a server; a port of its own costs nothing to
// devices, which only follow the URLs they are given.

// downloadServer builds the download listener's server under the
// --http listener's timeouts: Header bounds reading a request (fasthttp's
// ReadTimeout, from the first byte of a request), Write each short answer,
// Idle a kept-alive connection's wait, and a file goes out at the
// transfer policy's minimum rate, however long it takes.
func (s *Server) downloadServer(devices *devicehttp.Handler) *fasthttp.Server {
	t := s.cfg.HTTPTimeouts
	return &fasthttp.Server{
		Handler:      devices.FastDownloads(t),
		ReadTimeout:  t.Header,
		WriteTimeout: t.Write,
		IdleTimeout:  t.Idle,
		// A download request is a URL and a few headers, with no body.
		ReadBufferSize:        8 << 10,
		MaxRequestBodySize:    1 << 10,
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		Logger:                slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

func (s *Server) serveDownloads() error {
	ln := devicehttp.FastListener(s.dlLn)
	if s.tls != nil {
		ln = tls.NewListener(s.dlLn, s.tls)
	}
	// fasthttp's Serve returns nil once shut down; Wait takes
	// http.ErrServerClosed for a clean stop.
	if err := s.dl.Serve(ln); err != nil {
		return err
	}
	return http.ErrServerClosed
}

func (s *Server) shutdownDownloads(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, httpGrace)
	defer cancel()
	if err := s.dl.ShutdownWithContext(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// downloadBaseURL is the base of download URLs: the download listener's
// when there is one, else the HTTP listener's public URL.
func (s *Server) downloadBaseURL() string {
	if s.dlLn == nil {
		return s.publicURL()
	}
	if s.cfg.DownloadPublicURL != "" {
		return strings.TrimRight(s.cfg.DownloadPublicURL, "/")
	}
	return s.DownloadURL()
}

// DownloadURL is the base URL of the download listener, with the port it
// really got (https:// when it serves TLS), or "" without one.
func (s *Server) DownloadURL() string {
	if s.dlLn == nil {
		return ""
	}
	scheme := "http://"
	if s.tls != nil {
		scheme = "https://"
	}
	return scheme + dialable(s.dlLn.Addr())
}
