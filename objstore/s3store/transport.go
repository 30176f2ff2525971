package s3store

import (
	"net"
	"net/http"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// minIdleConns keeps connection reuse working for callers that leave
// Parallel at zero or set it low: every connection dropped for want of an
// idle slot costs a new TCP (and TLS) handshake on the next block.
const minIdleConns = 64

// newBuildableClient is the SDK client that config.LoadDefaultConfig
// finishes (a custom CA bundle from AWS_CA_BUNDLE or the profile) and whose
// transport the data path then uses. Being the SDK's own type also lets the
// instance-metadata client shorten its timeouts, so that a machine off EC2
// without credentials fails fast.
func newBuildableClient(parallel int) *awshttp.BuildableClient {
	idle := max(parallel, minIdleConns)
	return awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) {
			// An endpoint that drops packets fails in seconds, not minutes.
			d.Timeout = 5 * time.Second
			d.KeepAlive = 30 * time.Second
		}).
		WithTransportOptions(func(tr *http.Transport) {
			// S3 has no HTTP/2, and parallel 1 MiB transfers do better on
			// their own connections than multiplexed on one.
			tr.ForceAttemptHTTP2 = false
			tr.TLSHandshakeTimeout = 10 * time.Second
			// A server that took the request and went silent becomes a
			// transient error the retry layer repeats, not an NBD request
			// stuck forever.
			tr.ResponseHeaderTimeout = 30 * time.Second
			tr.MaxIdleConns = idle
			tr.MaxIdleConnsPerHost = idle
			tr.IdleConnTimeout = 90 * time.Second
			// Blocks are mostly incompressible, and transparent gzip would
			// hide the real Content-Length of ranged reads.
			tr.DisableCompression = true
		})
}

// dataClient wraps the finished transport in a client the store owns, so
// that Close can drop its idle connections.
func dataClient(transport *http.Transport) *http.Client {
	return &http.Client{
		Transport: transport,
		// A redirect from S3 means a wrong region or endpoint; following it
		// would only fail the signature check with a less useful error.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
