package testenv

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
)

// GCSEndpointEnv names the variable through which the test command passes the
// URL of its fake-gcs-server, which checks no credentials.
const GCSEndpointEnv = "OBJBACKER_TEST_GCS_ENDPOINT"

// GCSEndpoint returns the URL of the test GCS emulator, or fails or skips
// the test (see Missing) when none is configured or it does not answer.
func GCSEndpoint(t testing.TB) string {
	t.Helper()
	return emulator(t, GCSEndpointEnv, "GCS emulator", func(endpoint string) string {
		return endpoint + "/storage/v1/b"
	})
}

// NewGCSBucket creates a bucket with a fresh name on the test GCS emulator
// and removes it, with everything in it, when the test ends.
func NewGCSBucket(t testing.TB) string {
	t.Helper()
	bucket, _ := newGCSBucket(t)
	return bucket
}

// GCSURL returns "gs://BUCKET/PREFIX?endpoint=ENDPOINT" for a fresh bucket
// (see NewGCSBucket).
func GCSURL(t testing.TB, prefix string) string {
	t.Helper()
	bucket, endpoint := newGCSBucket(t)
	u := url.URL{
		Scheme:   "gs",
		Host:     bucket,
		Path:     "/" + prefix,
		RawQuery: url.Values{"endpoint": {endpoint}}.Encode(),
	}
	return u.String()
}

func newGCSBucket(t testing.TB) (bucket, endpoint string) {
	t.Helper()
	endpoint = GCSEndpoint(t)
	client := GCSClient(t, endpoint)
	bucket = bucketName(t)
	// The emulator takes any project.
	if err := client.Bucket(bucket).Create(t.Context(), "objbacker-test", nil); err != nil {
		t.Fatalf("creating bucket %s at %s: %v", bucket, endpoint, err)
	}
	t.Cleanup(func() {
		// t.Context() is already canceled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := removeGCSBucket(ctx, client.Bucket(bucket)); err != nil {
			t.Errorf("removing bucket %s at %s: %v", bucket, endpoint, err)
		}
	})
	return bucket, endpoint
}

// GCSClient returns an unauthenticated client for the GCS emulator at
// endpoint whose connections are closed when the test ends.
func GCSClient(t testing.TB, endpoint string) *storage.Client {
	t.Helper()
	transport := &http.Transport{}
	client, err := storage.NewClient(t.Context(),
		option.WithEndpoint(endpoint+"/storage/v1/"),
		option.WithoutAuthentication(),
		option.WithHTTPClient(&http.Client{Transport: transport}))
	if err != nil {
		t.Fatalf("GCS client for %s: %v", endpoint, err)
	}
	t.Cleanup(func() {
		client.Close()
		transport.CloseIdleConnections()
	})
	return client
}

func removeGCSBucket(ctx context.Context, bucket *storage.BucketHandle) error {
	it := bucket.Objects(ctx, nil)
	for {
		obj, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return err
		}
		if err := bucket.Object(obj.Name).Delete(ctx); err != nil {
			return err
		}
	}
	return bucket.Delete(ctx)
}
