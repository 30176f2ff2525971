package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/logging"
)

// newS3Client builds the bare SDK client the way objstore/s3store does
// (transport.go and s3store.go), so that the object-path ratio measures
// objbacker's own cost and not a differently tuned client: the same dialer
// and transport settings, idle connections for max(parallel, 64), SDK
// retries off, path-style URLs, and the SDK's default checksum and payload
// signing behaviour, which s3store leaves untouched. Keep the two in step
// when s3store's configuration changes.
func newS3Client(ctx context.Context, endpoint string, parallel int) (*s3.Client, error) {
	if endpoint == "" {
		endpoint = os.Getenv("OBJBACKER_TEST_S3_ENDPOINT")
	}
	if endpoint == "" {
		return nil, fmt.Errorf("no endpoint: pass --endpoint or set OBJBACKER_TEST_S3_ENDPOINT")
	}
	idle := max(parallel, 64)
	buildable := awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) {
			d.Timeout = 5 * time.Second
			d.KeepAlive = 30 * time.Second
		}).
		WithTransportOptions(func(tr *http.Transport) {
			tr.ForceAttemptHTTP2 = false
			tr.TLSHandshakeTimeout = 10 * time.Second
			tr.ResponseHeaderTimeout = 30 * time.Second
			tr.MaxIdleConns = idle
			tr.MaxIdleConnsPerHost = idle
			tr.IdleConnTimeout = 90 * time.Second
			tr.DisableCompression = true
		})
	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithHTTPClient(buildable),
		config.WithRegion("us-east-1"),
		// s3store sends SDK log lines to slog at debug level, which the
		// benchmark's objbacker drops; Nop costs the same.
		config.WithLogger(logging.Nop{}))
	if err != nil {
		return nil, fmt.Errorf("loading AWS configuration: %w", err)
	}
	finished, ok := cfg.HTTPClient.(*awshttp.BuildableClient)
	if !ok {
		return nil, fmt.Errorf("AWS configuration replaced the HTTP client with a %T", cfg.HTTPClient)
	}
	transport := finished.GetTransport()
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.HTTPClient = &http.Client{
			Transport:     transport,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		o.Retryer = aws.NopRetryer{}
		o.UsePathStyle = true
		o.BaseEndpoint = aws.String(endpoint)
	}), nil
}
