package s3store

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
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
	endpoint, bucket, open := minioBucket(t)
	direct := open.At(t, endpoint)
	proxyURL, corrupt := corruptingProxy(t, endpoint)
	viaProxy := open.At(t, proxyURL)

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

// TestEncryptedObjectETags: the ETag of an object encrypted with SSE-KMS or
// SSE-C is no MD5 of its bytes, and must not fail their reads as corrupt;
// that of an SSE-S3 or unencrypted object is, and a mismatch still must.
func TestEncryptedObjectETags(t *testing.T) {
	fakeCredentials(t)
	body := []byte("block bytes")
	other := md5.Sum([]byte("other bytes")) // an MD5-shaped ETag that is not this body's
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.URL.Path, "/bucket/")
		if r.URL.Path == "/bucket" || r.URL.Path == "/bucket/" {
			return // HeadBucket at Open
		}
		switch key {
		case "sse-kms":
			w.Header().Set("x-amz-server-side-encryption", "aws:kms")
		case "sse-kms-dsse":
			w.Header().Set("x-amz-server-side-encryption", "aws:kms:dsse")
		case "sse-c":
			w.Header().Set("x-amz-server-side-encryption-customer-algorithm", "AES256")
			w.Header().Set("x-amz-server-side-encryption-customer-key-MD5", "ZjY0Y2I0NmUwYjA4NjQ1Mg==")
		case "sse-s3":
			w.Header().Set("x-amz-server-side-encryption", "AES256")
		case "plain":
		default:
			t.Errorf("fake S3: unexpected %s %s", r.Method, r.URL)
		}
		w.Header().Set("ETag", `"`+hex.EncodeToString(other[:])+`"`)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}))
	defer srv.Close()
	s, err := Open(t.Context(), Config{Bucket: "bucket", Endpoint: srv.URL, PathStyle: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	for _, tc := range []struct {
		key     string
		corrupt bool
	}{
		{"sse-kms", false},
		{"sse-kms-dsse", false},
		{"sse-c", false},
		{"sse-s3", true},
		{"plain", true},
	} {
		rc, _, err := s.Get(t.Context(), tc.key, 0, -1)
		if err != nil {
			t.Fatalf("Get(%s): %v", tc.key, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		switch {
		case tc.corrupt && !errors.Is(err, objstore.ErrCorrupt):
			t.Errorf("%s: read with an ETag not the body's MD5 = %v; want ErrCorrupt", tc.key, err)
		case !tc.corrupt && (err != nil || !bytes.Equal(got, body)):
			t.Errorf("%s: read = %q, %v; want the body: the ETag of such an object is no MD5", tc.key, got, err)
		}
	}
}

// TestRetryingResumesBodiesCutInFlight reads through a proxy that drops
// the connection part-way through every other GET body: through Retrying,
// every read still delivers the object exactly, whether the SDK checks its
// checksum or the store its ETag.
func TestRetryingResumesBodiesCutInFlight(t *testing.T) {
	endpoint, bucket, open := minioBucket(t)
	proxy := storetest.NewCuttingProxy(t, endpoint, false)
	viaProxy := open.At(t, proxy.URL)
	data := storetest.RandomBytes(1 << 20)
	storetest.MustPut(t, open.At(t, endpoint), "ours", data, objstore.PutOptions{})
	rawPut(t, endpoint, bucket, "s3backer-style", data)
	for _, key := range []string{"ours", "s3backer-style"} {
		storetest.ResumedReads(t, proxy, viaProxy, key, data)
	}
}

// TestDamagedUploadIsRetried: MinIO refuses a PUT whose bytes were damaged
// on the way, and the refusal is worth retrying.
func TestDamagedUploadIsRetried(t *testing.T) {
	endpoint, _, open := minioBucket(t)
	storetest.DamagedUploads(t, endpoint, open)
}

// minioBucket returns MinIO's endpoint, a new bucket there, and the opener
// of the bucket at an endpoint: MinIO's, or a proxy's in front of it.
func minioBucket(t *testing.T) (endpoint, bucket string, open storetest.Opener) {
	endpoint, bucket = testenv.S3Endpoint(t), testenv.NewS3Bucket(t)
	return endpoint, bucket, func(endpoint string) (objstore.Store, error) {
		return Open(t.Context(), Config{Bucket: bucket, Endpoint: endpoint, PathStyle: true})
	}
}
