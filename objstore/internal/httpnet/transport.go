// Package httpnet is the HTTP plumbing the cloud drivers without an
// S3-style SDK transport share (gcsstore, azblobstore): a transport tuned
// for many parallel block-sized requests, and the judgement of which
// network failures are worth retrying.
package httpnet

import (
	"net"
	"net/http"
	"time"
)

// minIdleConns keeps connection reuse working for callers that leave
// Parallel at zero or set it low: every connection dropped for want of an
// idle slot costs a new TCP (and TLS) handshake on the next block.
const minIdleConns = 64

// NewTransport returns a transport that keeps at least parallel idle
// connections per host, where Go's default keeps 2 and the cloud SDKs 10 to
// 100, so that a steady stream of block requests reuses its connections.
func NewTransport(parallel int) *http.Transport {
	idle := max(parallel, minIdleConns)
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			// An endpoint that drops packets fails in seconds, not minutes.
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		// Parallel 1 MiB transfers do better on their own connections than
		// multiplexed on one HTTP/2 connection's flow-control window.
		ForceAttemptHTTP2:   false,
		TLSHandshakeTimeout: 10 * time.Second,
		// A server that took the request and went silent becomes a
		// transient error the retry layer repeats, not an NBD request stuck
		// forever.
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConns:          idle,
		MaxIdleConnsPerHost:   idle,
		IdleConnTimeout:       90 * time.Second,
		// Blocks are mostly incompressible, and transparent gzip would hide
		// the real Content-Length of ranged reads.
		DisableCompression: true,
	}
}
