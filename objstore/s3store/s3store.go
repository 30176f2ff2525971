// Package s3store is the objstore driver for Amazon S3 and S3-compatible
// servers such as MinIO, built on aws-sdk-go-v2.
//
// The SDK's own retries are off: an objstore.Retrying decorator above the
// store retries, and this package only classifies errors for it.
package s3store

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/objbacker/objbacker/objstore"
)

// Config names a bucket and how to reach it.
type Config struct {
	Bucket string
	// Endpoint is the base URL of an S3-compatible server, such as
	// "http://127.0.0.1:9000". Empty means AWS S3.
	Endpoint string
	// Region defaults to AWS_REGION or the shared config's region, and to
	// us-east-1 when Endpoint is set and neither names one.
	Region string
	// PathStyle puts the bucket in the URL path rather than the host name.
	PathStyle bool
	// Parallel is how many requests the caller keeps in flight.
	Parallel int
}

// Store is an objstore.Store on one S3 bucket.
type Store struct {
	client    *s3.Client
	transport *http.Transport
	bucket    string
}

var _ objstore.Store = (*Store)(nil)

// credentialsTimeout bounds the search for credentials at Open. Without
// static ones the default chain ends at the EC2 instance metadata service,
// which off EC2 may never answer; a start-up should fail, not hang.
const credentialsTimeout = 10 * time.Second

// Open connects to cfg.Bucket with the default AWS credential chain
// (environment, shared files, instance role) and checks that the bucket is
// reachable. Errors wrap objstore.ErrBucketNotFound, ErrAccessDenied or a
// transient network error, and name the endpoint and bucket.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Bucket == "" {
		return nil, fmt.Errorf("s3store: %w: no bucket", objstore.ErrInvalidURL)
	}
	if err := checkEndpoint(cfg.Endpoint); err != nil {
		return nil, err
	}
	loadOpts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(newBuildableClient(cfg.Parallel)),
		config.WithLogger(sdkLogger{}),
	}
	if cfg.Region != "" {
		loadOpts = append(loadOpts, config.WithRegion(cfg.Region))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("s3store: bucket %q: loading AWS configuration: %w", cfg.Bucket, err)
	}
	if awsCfg.Region == "" {
		if cfg.Endpoint == "" {
			return nil, fmt.Errorf("s3store: bucket %q: no AWS region: set AWS_REGION or region= in the store URL", cfg.Bucket)
		}
		// S3-compatible servers mostly ignore the region, but SigV4 needs one.
		awsCfg.Region = "us-east-1"
	}
	where := describe(cfg, awsCfg.Region)
	if err := checkCredentials(ctx, awsCfg.Credentials); err != nil {
		return nil, fmt.Errorf("s3store: %s: %w", where, err)
	}

	finished, ok := awsCfg.HTTPClient.(*awshttp.BuildableClient)
	if !ok {
		return nil, fmt.Errorf("s3store: %s: AWS configuration replaced the HTTP client with a %T", where, awsCfg.HTTPClient)
	}
	transport := finished.GetTransport()
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.HTTPClient = dataClient(transport)
		o.Retryer = aws.NopRetryer{}
		o.UsePathStyle = cfg.PathStyle
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	s := &Store{client: client, transport: transport, bucket: cfg.Bucket}
	if err := s.probe(ctx); err != nil {
		transport.CloseIdleConnections()
		return nil, fmt.Errorf("s3store: %s: %w", where, err)
	}
	return s, nil
}

// probe asks for the bucket (HEAD), at Open and when a HEAD of an object
// answers a bare 404; a missing bucket is ErrBucketNotFound.
func (s *Store) probe(ctx context.Context) error {
	if _, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket}); err != nil {
		return classify(ctx, err, objstore.ErrBucketNotFound)
	}
	return nil
}

// Close drops idle connections; requests still running finish normally.
func (s *Store) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}

func checkEndpoint(endpoint string) error {
	if endpoint == "" {
		return nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("s3store: %w: endpoint %q: want http://host[:port] or https://host[:port]", objstore.ErrInvalidURL, endpoint)
	}
	return nil
}

// checkCredentials fetches credentials once, so that having none is a clear
// error at start-up rather than the first failing block request.
func checkCredentials(ctx context.Context, creds aws.CredentialsProvider) error {
	const hint = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an instance role"
	if creds == nil {
		return fmt.Errorf("%w: no AWS credentials (%s)", objstore.ErrNoCredentials, hint)
	}
	ctx, cancel := context.WithTimeout(ctx, credentialsTimeout)
	defer cancel()
	// The chain's last link is the instance role: its failure is what
	// having no credentials off EC2 looks like.
	if _, err := creds.Retrieve(ctx); err != nil {
		return fmt.Errorf("%w: no usable AWS credentials (%s): %w", objstore.ErrNoCredentials, hint, err)
	}
	return nil
}

// describe names the bucket and where it lives, for start-up errors.
func describe(cfg Config, region string) string {
	if cfg.Endpoint != "" {
		return fmt.Sprintf("bucket %q at %s", cfg.Bucket, cfg.Endpoint)
	}
	return fmt.Sprintf("bucket %q in AWS S3 region %s", cfg.Bucket, region)
}
