package testenv

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3EndpointEnv names the variable through which the test command passes the
// URL of its MinIO server; AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
// AWS_REGION come with it.
const S3EndpointEnv = "OBJBACKER_TEST_S3_ENDPOINT"

// S3Endpoint returns the URL of the test S3 server, or fails or skips the
// test (see Missing) when none is configured or it does not answer.
func S3Endpoint(t testing.TB) string {
	t.Helper()
	endpoint := os.Getenv(S3EndpointEnv)
	if endpoint == "" {
		Missing(t, "S3 server: %s is not set", S3EndpointEnv)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, endpoint, nil)
	if err != nil {
		t.Fatalf("%s=%q: %v", S3EndpointEnv, endpoint, err)
	}
	// Any HTTP answer, even 403, shows a server; the probe keeps no
	// connection behind.
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		Missing(t, "S3 server %s=%s does not answer: %v", S3EndpointEnv, endpoint, err)
	}
	resp.Body.Close()
	return endpoint
}

// NewS3Bucket creates a bucket with a fresh name on the test S3 server and
// removes it, with everything in it, when the test ends.
func NewS3Bucket(t testing.TB) string {
	t.Helper()
	bucket, _ := newS3Bucket(t)
	return bucket
}

// S3URL returns "s3://BUCKET/PREFIX?endpoint=ENDPOINT" for a fresh bucket
// (see NewS3Bucket).
func S3URL(t testing.TB, prefix string) string {
	t.Helper()
	bucket, endpoint := newS3Bucket(t)
	u := url.URL{
		Scheme:   "s3",
		Host:     bucket,
		Path:     "/" + prefix,
		RawQuery: url.Values{"endpoint": {endpoint}}.Encode(),
	}
	return u.String()
}

func newS3Bucket(t testing.TB) (bucket, endpoint string) {
	t.Helper()
	endpoint = S3Endpoint(t)
	client := s3Client(t, endpoint)
	bucket = bucketName(t)
	if _, err := client.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatalf("creating bucket %s at %s: %v", bucket, endpoint, err)
	}
	t.Cleanup(func() {
		// t.Context() is already canceled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := removeBucket(ctx, client, bucket); err != nil {
			t.Errorf("removing bucket %s at %s: %v", bucket, endpoint, err)
		}
	})
	return bucket, endpoint
}

// s3Client returns a client for the test S3 server whose connections are
// closed when the test ends.
func s3Client(t testing.TB, endpoint string) *s3.Client {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(t.Context(), config.WithDefaultRegion("us-east-1"))
	if err != nil {
		t.Fatalf("loading AWS configuration: %v", err)
	}
	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.HTTPClient = &http.Client{Transport: transport}
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
	})
}

func removeBucket(ctx context.Context, client *s3.Client, bucket string) error {
	pages := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: &bucket})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, obj := range page.Contents {
			if _, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: obj.Key}); err != nil {
				return err
			}
		}
	}
	_, err := client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &bucket})
	return err
}

var notBucketChars = regexp.MustCompile(`[^a-z0-9]+`)

// bucketName makes a valid, unique bucket name (3-63 lower-case letters,
// digits and dashes) that shows which test made it.
func bucketName(t testing.TB) string {
	name := notBucketChars.ReplaceAllString(strings.ToLower(t.Name()), "-")
	name = strings.Trim(name[:min(len(name), 40)], "-")
	return "objb-" + name + "-" + strings.ToLower(rand.Text()[:12])
}
