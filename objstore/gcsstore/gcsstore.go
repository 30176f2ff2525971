// Package gcsstore is the objstore driver for Google Cloud Storage, built on
// cloud.google.com/go/storage (JSON API; the SDK reads through the XML API).
//
// The SDK's own retries are off: an objstore.Retrying decorator above the
// store retries, and this package only classifies errors for it.
//
// ETags are object generations in decimal, such as "1718023434123456": a
// write precondition in GCS names a generation, not its ETag, so the token
// Put and Get return is the one IfMatch needs back.
package gcsstore

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"cloud.google.com/go/auth/httptransport"
	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/internal/httpnet"
)

// Config names a bucket and how to reach it.
type Config struct {
	Bucket string
	// Endpoint is the base URL of a GCS-compatible server, such as
	// "http://127.0.0.1:4443" for fake-gcs-server. Empty means
	// STORAGE_EMULATOR_HOST when that is set, and Google Cloud Storage
	// otherwise.
	Endpoint string
	// Parallel is how many requests the caller keeps in flight.
	Parallel int
}

// Store is an objstore.Store on one GCS bucket.
type Store struct {
	client    *storage.Client
	bucket    *storage.BucketHandle
	name      string
	transport *http.Transport
}

var _ objstore.Store = (*Store)(nil)

// emulatorEnv is the variable through which the SDK and Google's tools are
// pointed at an emulator.
const emulatorEnv = "STORAGE_EMULATOR_HOST"

// Open connects to cfg.Bucket with Application Default Credentials
// (GOOGLE_APPLICATION_CREDENTIALS, gcloud's login, or the service account
// of a Google Cloud machine), or with none for an emulator, and checks that
// the bucket is reachable. Errors wrap objstore.ErrBucketNotFound,
// ErrAccessDenied or a transient network error, and name the bucket and
// where it was looked for.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	return open(ctx, cfg, httpnet.NewTransport(cfg.Parallel))
}

// open is Open over a given transport, which tests point at TLS servers
// with certificates of their own.
func open(ctx context.Context, cfg Config, transport *http.Transport) (*Store, error) {
	if cfg.Bucket == "" {
		return nil, fmt.Errorf("gcsstore: %w: no bucket", objstore.ErrInvalidURL)
	}
	where, anonymous, err := locate(cfg)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: transport}
	opts := []option.ClientOption{option.WithHTTPClient(hc)}
	if anonymous {
		opts = append(opts, option.WithoutAuthentication())
	} else {
		creds, err := findCredentials(ctx)
		if err != nil {
			return nil, fmt.Errorf("gcsstore: %s: %w", where, err)
		}
		if err := httptransport.AddAuthorizationMiddleware(hc, creds); err != nil {
			return nil, fmt.Errorf("gcsstore: %s: %w", where, err)
		}
		// Handing the SDK the credentials keeps it from searching again.
		opts = append(opts, option.WithAuthCredentials(creds))
	}
	if cfg.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(strings.TrimSuffix(cfg.Endpoint, "/")+"/storage/v1/"))
	}
	client, err := storage.NewClient(ctx, opts...)
	if err != nil {
		transport.CloseIdleConnections()
		return nil, fmt.Errorf("gcsstore: %s: %w", where, err)
	}
	client.SetRetry(storage.WithPolicy(storage.RetryNever))
	s := &Store{client: client, bucket: client.Bucket(cfg.Bucket), name: cfg.Bucket, transport: transport}
	if err := s.probe(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("gcsstore: %s: %w", where, err)
	}
	return s, nil
}

// Close drops idle connections; requests still running finish normally.
func (s *Store) Close() error {
	err := s.client.Close()
	// The SDK wraps the client's transport in one of its own, through which
	// idle connections are not always dropped.
	s.transport.CloseIdleConnections()
	return err
}

// locate says where the bucket is, for start-up errors, and whether
// requests go without credentials: to an emulator, named by
// STORAGE_EMULATOR_HOST or by an http:// endpoint. A bearer token must
// never cross plain HTTP.
func locate(cfg Config) (where string, anonymous bool, err error) {
	emulator := os.Getenv(emulatorEnv)
	if cfg.Endpoint == "" {
		if emulator != "" {
			return fmt.Sprintf("bucket %q at %s=%s", cfg.Bucket, emulatorEnv, emulator), true, nil
		}
		return fmt.Sprintf("bucket %q in Google Cloud Storage", cfg.Bucket), false, nil
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" {
		return "", false, fmt.Errorf("gcsstore: %w: endpoint %q: want http://host[:port] or https://host[:port]", objstore.ErrInvalidURL, cfg.Endpoint)
	}
	return fmt.Sprintf("bucket %q at %s", cfg.Bucket, cfg.Endpoint), u.Scheme == "http" || emulator != "", nil
}

// probe lists at most one object. That needs only the permission the block
// core needs anyway (storage.objects.list), where reading the bucket's
// attributes would need storage.buckets.get, which object-level roles lack.
func (s *Store) probe(ctx context.Context) error {
	it := s.bucket.Objects(ctx, &storage.Query{})
	it.PageInfo().MaxSize = 1
	if _, err := it.Next(); err != nil && !errors.Is(err, iterator.Done) {
		return classify(ctx, err, objstore.ErrBucketNotFound)
	}
	return nil
}
