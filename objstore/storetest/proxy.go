package storetest

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/objbacker/objbacker/objstore"
)

// Opener opens the driver under test on its test bucket at endpoint: the
// server's, or that of a proxy in front of it, so that a test can reach
// one bucket both ways.
type Opener func(endpoint string) (objstore.Store, error)

// At opens the store at endpoint for as long as tb lasts.
func (open Opener) At(tb testing.TB, endpoint string) objstore.Store {
	tb.Helper()
	s, err := open(endpoint)
	if err != nil {
		tb.Fatalf("Open at %s: %v", endpoint, err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// behaviour is what a proxy does to the traffic it forwards; a nil hook
// changes nothing.
type behaviour struct {
	// serverHost sends requests with the server's Host header rather
	// than the proxy's (see NewCuttingProxy).
	serverHost bool
	// request may change a request before it is forwarded, or answer it
	// itself and return false.
	request func(w http.ResponseWriter, r *http.Request) (forward bool)
	// response may change the server's response.
	response func(*http.Response) error
	// quiet drops the log line of each forwarding that fails, for a
	// behaviour that makes them fail on purpose.
	quiet bool
}

// forward starts a proxy to the server at endpoint, which b alters the
// traffic of and which lasts as long as tb, and returns endpoint's URL at
// the proxy.
func forward(tb testing.TB, endpoint string, b behaviour) string {
	tb.Helper()
	target, err := url.Parse(endpoint)
	if err != nil {
		tb.Fatal(err)
	}
	// Requests keep their paths: the URL carries endpoint's (Azure's account).
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: target.Scheme, Host: target.Host})
	proxy.ModifyResponse = b.response
	if b.quiet {
		proxy.ErrorLog = log.New(io.Discard, "", 0)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b.serverHost {
			r.Host = target.Host
		}
		if b.request == nil || b.request(w, r) {
			proxy.ServeHTTP(w, r)
		}
	}))
	tb.Cleanup(srv.Close)
	return srv.URL + target.Path
}
