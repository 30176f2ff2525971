package s3store

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/objbacker/objbacker/internal/testenv"
	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/storetest"
)

// corruptingProxy forwards to MinIO and, while corrupt is set, flips one
// byte of every GET body: damage in flight that the store must catch.
func corruptingProxy(t *testing.T, endpoint string) (string, *atomic.Bool) {
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	var corrupt atomic.Bool
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(r *http.Response) error {
		if r.Request.Method != http.MethodGet || !corrupt.Load() || r.StatusCode != http.StatusOK {
			return nil
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		r.Body.Close()
		if len(body) > 1000 {
			body[1000] ^= 0x40
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		return nil
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return srv.URL, &corrupt
}

func TestCorruptionInFlightIsAnError(t *testing.T) {
	endpoint := testenv.S3Endpoint(t)
	bucket := testenv.NewS3Bucket(t)
	direct, err := Open(t.Context(), Config{Bucket: bucket, Endpoint: endpoint, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	proxyURL, corrupt := corruptingProxy(t, endpoint)
	viaProxy, err := Open(t.Context(), Config{Bucket: bucket, Endpoint: proxyURL, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	defer viaProxy.Close()

	data := storetest.RandomBytes(1 << 20)
	// Our own PUTs carry the SDK's checksum, which GET validates.
	storetest.MustPut(t, direct, "ours", data, objstore.PutOptions{})
	// s3backer's PUTs carry Content-MD5 only: the ETag is all there is.
	rawPut(t, endpoint, bucket, "s3backer-style", data)

	for _, key := range []string{"ours", "s3backer-style"} {
		corrupt.Store(false)
		if got, _ := storetest.MustGet(t, viaProxy, key, 0, -1); !bytes.Equal(got, data) {
			t.Fatalf("%s: clean read differs", key)
		}
		corrupt.Store(true)
		rc, _, err := viaProxy.Get(t.Context(), key, 0, -1)
		if err == nil {
			_, err = io.ReadAll(rc)
			rc.Close()
		}
		if !errors.Is(err, objstore.ErrCorrupt) || !objstore.IsTransient(err) {
			t.Fatalf("%s: read of a corrupted body: err = %v; want a transient ErrCorrupt", key, err)
		}
		t.Logf("%s: %v", key, err)
	}
}

// rawPut stores an object the way s3backer does: no SDK checksum.
func rawPut(t *testing.T, endpoint, bucket, key string, data []byte) {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(t.Context(), config.WithRegion("us-east-1"),
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired))
	if err != nil {
		t.Fatal(err)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
	})
	_, err = client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(data)})
	if err != nil {
		t.Fatal(err)
	}
	head, err := client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &bucket, Key: &key, ChecksumMode: "ENABLED"})
	if err != nil {
		t.Fatal(err)
	}
	if head.ChecksumCRC32 != nil || head.ChecksumCRC64NVME != nil || strings.Contains(aws.ToString(head.ETag), "-") {
		t.Fatalf("the s3backer-style object has a checksum or a multipart ETag: %+v", head)
	}
}
