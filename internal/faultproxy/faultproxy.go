// Package faultproxy is an HTTP proxy that sits between objbacker and an
// S3-compatible store (MinIO in the tests) and misbehaves on purpose: it
// answers 503s and 500s, resets connections mid-body, stalls, corrupts one
// byte of a GET, LIST or PUT body, drops the answer to a request the store
// has already carried out, and refuses connections while the store is
// "down". The faults are set per scenario and can be changed at any moment
// while requests flow (SetFaults, SetDown).
//
// The proxy forwards each request unchanged, Host header included, so that
// the client's SigV4 signature, computed for the proxy's address, still
// verifies at the store. It reads whole bodies into memory (block objects
// and listings are small), which lets it cut or corrupt them at a chosen
// byte.
package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Faults says what the proxy does to the requests it receives. Each rate is
// the probability, drawn per request, that the fault strikes a request it
// applies to; at most one fault strikes a request.
type Faults struct {
	// Status503 and Status500 answer the request with that status and an
	// S3 error body (SlowDown, InternalError), without forwarding it.
	Status503, Status500 float64
	// Reset forwards a GET and cuts the answer's body halfway with a TCP
	// reset; for a PUT it reads half the request body and resets before
	// forwarding anything.
	Reset float64
	// Stall holds an answer for StallFor, halfway through its body when it
	// has one, before its headers otherwise.
	Stall    float64
	StallFor time.Duration
	// CorruptGet flips one bit of one byte of an object GET's body.
	CorruptGet float64
	// CorruptList changes one character of one key in a listing to another
	// hex digit: the XML stays well formed and the damage is a wrong key,
	// which no parser catches.
	CorruptList float64
	// CorruptPut flips one bit of one byte of a PUT's body before the store
	// sees it.
	CorruptPut float64
	// LoseResponse forwards the request, lets the store carry it out, and
	// then resets the connection instead of answering.
	LoseResponse float64
}

// Stats counts what the proxy did.
type Stats struct {
	Requests, Forwarded                               int64
	Status503, Status500, Resets, Stalls              int64
	CorruptGets, CorruptLists, CorruptPuts, LostResps int64
}

// Injected is the number of faults injected, of every kind.
func (s Stats) Injected() int64 {
	return s.Status503 + s.Status500 + s.Resets + s.Stalls + s.CorruptGets + s.CorruptLists + s.CorruptPuts + s.LostResps
}

func (s Stats) String() string {
	return fmt.Sprintf("%d requests, %d forwarded; injected: %d 503, %d 500, %d resets, %d stalls, %d corrupt GET, %d corrupt LIST, %d corrupt PUT, %d lost responses",
		s.Requests, s.Forwarded, s.Status503, s.Status500, s.Resets, s.Stalls, s.CorruptGets, s.CorruptLists, s.CorruptPuts, s.LostResps)
}

// Proxy is a running fault-injecting proxy.
type Proxy struct {
	target    *url.URL
	addr      string
	log       *slog.Logger
	transport *http.Transport
	srv       *http.Server

	faults atomic.Pointer[Faults]

	mu     sync.Mutex
	rng    *rand.Rand
	ln     net.Listener // nil while down
	conns  map[net.Conn]struct{}
	closed bool
	served sync.WaitGroup

	stats struct {
		requests, forwarded, status503, status500, resets, stalls atomic.Int64
		corruptGets, corruptLists, corruptPuts, lostResps         atomic.Int64
	}
}

// Start listens on 127.0.0.1 (a free port) and forwards to target, a base
// URL such as "http://127.0.0.1:9000". seed makes the fault draws
// repeatable for a given order of requests. It injects no fault until
// SetFaults is called.
func Start(target string, seed uint64, log *slog.Logger) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("faultproxy: target %q: want http://host:port", target)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	p := &Proxy{
		target: u,
		addr:   ln.Addr().String(),
		log:    log,
		// Its own transport, so that no HTTP_PROXY setting and no
		// transparent gzip stand between the proxy and the store.
		transport: &http.Transport{
			Proxy:                 nil,
			DisableCompression:    true,
			MaxIdleConnsPerHost:   64,
			ResponseHeaderTimeout: 2 * time.Minute,
		},
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		conns: map[net.Conn]struct{}{},
	}
	p.faults.Store(&Faults{})
	p.srv = &http.Server{
		Handler:   http.HandlerFunc(p.handle),
		ConnState: p.track,
		ErrorLog:  slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	p.serve(ln)
	return p, nil
}

// URL is the proxy's base URL, to be used as the store's endpoint.
func (p *Proxy) URL() string { return "http://" + p.addr }

// SetFaults replaces the faults injected from now on; requests already
// past their draw keep theirs.
func (p *Proxy) SetFaults(f Faults) { p.faults.Store(&f) }

// SetDown takes the store down (true): the proxy closes its listener, so
// that new connections are refused, and resets every open one. false
// listens again on the same address.
func (p *Proxy) SetDown(down bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("faultproxy: closed")
	}
	switch {
	case down && p.ln != nil:
		p.ln.Close()
		p.ln = nil
		for c := range p.conns {
			reset(c)
		}
	case !down && p.ln == nil:
		ln, err := net.Listen("tcp", p.addr)
		if err != nil {
			return fmt.Errorf("faultproxy: listening again on %s: %w", p.addr, err)
		}
		p.serveLocked(ln)
	}
	return nil
}

// Stats returns what the proxy has done so far.
func (p *Proxy) Stats() Stats {
	s := &p.stats
	return Stats{
		Requests: s.requests.Load(), Forwarded: s.forwarded.Load(),
		Status503: s.status503.Load(), Status500: s.status500.Load(), Resets: s.resets.Load(), Stalls: s.stalls.Load(),
		CorruptGets: s.corruptGets.Load(), CorruptLists: s.corruptLists.Load(), CorruptPuts: s.corruptPuts.Load(), LostResps: s.lostResps.Load(),
	}
}

// Close stops the proxy and resets every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	p.mu.Unlock()
	err := p.srv.Close()
	p.served.Wait()
	p.transport.CloseIdleConnections()
	return err
}

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.serveLocked(ln)
}

func (p *Proxy) serveLocked(ln net.Listener) {
	p.ln = ln
	p.served.Add(1)
	go func() {
		defer p.served.Done()
		// Serve returns when the listener closes (down) or the server does.
		p.srv.Serve(ln)
	}()
}

func (p *Proxy) track(c net.Conn, state http.ConnState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch state {
	case http.StateNew:
		p.conns[c] = struct{}{}
	case http.StateHijacked, http.StateClosed:
		delete(p.conns, c)
	}
}

// reset closes c with a TCP RST rather than a FIN: what a crashed or
// rebooted peer, or a middlebox, sends.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// kind sorts requests by what the faults apply to.
type kind int

const (
	other     kind = iota
	objectGet      // GET /bucket/key
	list           // GET /bucket?list-type=2
	objectPut      // PUT /bucket/key
)

func classify(r *http.Request) kind {
	// Path-style addressing, as objbacker uses with an endpoint.
	isObject := strings.Contains(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.Method == http.MethodGet && isObject:
		return objectGet
	case r.Method == http.MethodGet && r.URL.Query().Has("list-type"):
		return list
	case r.Method == http.MethodPut && isObject:
		return objectPut
	}
	return other
}

// fault is the one fault drawn for a request, or none.
type fault int

const (
	none fault = iota
	status503
	status500
	resetBody
	stall
	corruptGet
	corruptList
	corruptPut
	loseResponse
)

// draw picks at most one fault for a request of kind k.
func (p *Proxy) draw(f *Faults, k kind) (fault, float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	x := p.rng.Float64()
	pos := p.rng.Float64()
	candidates := []struct {
		fault fault
		rate  float64
		ok    bool
	}{
		{status503, f.Status503, true},
		{status500, f.Status500, true},
		{resetBody, f.Reset, k == objectGet || k == objectPut},
		{stall, f.Stall, f.StallFor > 0},
		{corruptGet, f.CorruptGet, k == objectGet},
		{corruptList, f.CorruptList, k == list},
		{corruptPut, f.CorruptPut, k == objectPut},
		{loseResponse, f.LoseResponse, true},
	}
	for _, c := range candidates {
		if !c.ok {
			continue
		}
		if x < c.rate {
			return c.fault, pos
		}
		x -= c.rate
	}
	return none, pos
}

func (p *Proxy) handle(w http.ResponseWriter, r *http.Request) {
	p.stats.requests.Add(1)
	f := p.faults.Load()
	k := classify(r)
	ft, pos := p.draw(f, k)
	log := p.log.With("method", r.Method, "path", r.URL.Path)

	switch ft {
	case status503:
		p.stats.status503.Add(1)
		log.Debug("injecting 503")
		s3Error(w, http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate (injected).")
		return
	case status500:
		p.stats.status500.Add(1)
		log.Debug("injecting 500")
		s3Error(w, http.StatusInternalServerError, "InternalError", "We encountered an internal error (injected).")
		return
	}

	cutRequest := ft == resetBody && k == objectPut
	body, err := readBody(r, cutRequest)
	if cutRequest {
		p.stats.resets.Add(1)
		log.Debug("injecting a reset mid-request-body")
		p.hijackReset(w)
		return
	}
	if err != nil {
		log.Debug("reading the request body", "err", err)
		p.hijackReset(w)
		return
	}
	if ft == corruptPut && len(body) > 0 {
		p.stats.corruptPuts.Add(1)
		flipByte(body, pos)
		log.Debug("corrupting a PUT body")
	}

	resp, err := p.forward(r, body)
	if err != nil {
		// The store is unreachable (killed, restarting): a gateway error,
		// which S3 clients retry.
		log.Debug("forwarding", "err", err)
		s3Error(w, http.StatusBadGateway, "BadGateway", err.Error())
		return
	}
	respBody, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		log.Debug("reading the store's answer", "err", err)
		p.hijackReset(w)
		return
	}
	p.stats.forwarded.Add(1)

	switch ft {
	case loseResponse:
		p.stats.lostResps.Add(1)
		log.Debug("dropping the answer", "status", resp.StatusCode)
		p.hijackReset(w)
		return
	case corruptGet:
		if resp.StatusCode/100 == 2 && len(respBody) > 0 {
			p.stats.corruptGets.Add(1)
			flipByte(respBody, pos)
			log.Debug("corrupting a GET body")
		}
	case corruptList:
		if resp.StatusCode == http.StatusOK && corruptKey(respBody, pos) {
			p.stats.corruptLists.Add(1)
			log.Debug("corrupting a listed key")
		}
	}

	for name, values := range resp.Header {
		if !hopByHop[http.CanonicalHeaderKey(name)] {
			w.Header()[name] = values
		}
	}
	if r.Method == http.MethodHead {
		// No body, but the length of the object, which S3 clients read.
		if cl := resp.Header.Get("Content-Length"); cl != "" {
			w.Header().Set("Content-Length", cl)
		}
	} else {
		w.Header().Set("Content-Length", strconv.Itoa(len(respBody)))
	}

	half := len(respBody) / 2
	if ft == stall {
		p.stats.stalls.Add(1)
		log.Debug("stalling", "for", f.StallFor, "body", len(respBody))
		if half == 0 {
			sleep(r.Context(), f.StallFor)
		}
	}
	w.WriteHeader(resp.StatusCode)
	if ft == resetBody && k == objectGet && len(respBody) > 1 {
		w.Write(respBody[:half])
		p.stats.resets.Add(1)
		log.Debug("injecting a reset mid-response-body")
		p.hijackReset(w)
		return
	}
	if ft == stall && half > 0 {
		w.Write(respBody[:half])
		http.NewResponseController(w).Flush()
		sleep(r.Context(), f.StallFor)
		w.Write(respBody[half:])
		return
	}
	w.Write(respBody)
}

// readBody reads the request body whole, or only half of it when the
// request is to be cut off.
func readBody(r *http.Request, half bool) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	if half && r.ContentLength > 1 {
		buf := make([]byte, r.ContentLength/2)
		_, err := io.ReadFull(r.Body, buf)
		return buf, err
	}
	return io.ReadAll(r.Body)
}

var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Content-Length": true,
}

func (p *Proxy) forward(r *http.Request, body []byte) (*http.Response, error) {
	out := &url.URL{Scheme: p.target.Scheme, Host: p.target.Host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, out.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for name, values := range r.Header {
		if !hopByHop[http.CanonicalHeaderKey(name)] {
			req.Header[name] = values
		}
	}
	// The client signed the Host it sent, the proxy's.
	req.Host = r.Host
	req.ContentLength = int64(len(body))
	if len(body) == 0 {
		req.Body = http.NoBody
	}
	return p.transport.RoundTrip(req)
}

// hijackReset takes the connection over from net/http and resets it.
// Hijack pushes out what was written so far (the headers and half a body),
// and only that: an explicit Flush would send a 200 for an answer not yet
// begun.
func (p *Proxy) hijackReset(w http.ResponseWriter) {
	c, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Unreachable with HTTP/1.1; a panic with ErrAbortHandler still
		// ends the connection without a proper answer.
		panic(http.ErrAbortHandler)
	}
	reset(c)
}

func s3Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Connection", "close")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n<Error><Code>%s</Code><Message>%s</Message></Error>", code, msg)
}

// flipByte flips one bit of the byte at relative position pos (0 ≤ pos < 1).
func flipByte(b []byte, pos float64) {
	i := min(int(pos*float64(len(b))), len(b)-1)
	b[i] ^= 1 << (i % 8)
}

var keyElement = regexp.MustCompile(`<Key>([^<]+)</Key>`)

// corruptKey replaces one character of one <Key> in a listing with a
// different hex digit, in place; false if the listing has no key.
func corruptKey(body []byte, pos float64) bool {
	keys := keyElement.FindAllSubmatchIndex(body, -1)
	if len(keys) == 0 {
		return false
	}
	k := keys[min(int(pos*float64(len(keys))), len(keys)-1)]
	start, end := k[2], k[3]
	// A character of the last eight, the block number in s3backer's
	// names, so that the wrong key still looks like a block.
	i := max(start, end-8) + int(pos*1e6)%min(8, end-start)
	const hex = "0123456789abcdef"
	if j := strings.IndexByte(hex, body[i]); j >= 0 {
		// An offset of 1 to 15 never lands on the digit itself.
		body[i] = hex[(j+1+int(pos*1e3)%15)%16]
	} else {
		body[i] = '0'
	}
	return true
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
