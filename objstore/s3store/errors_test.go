package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/objbacker/objbacker/objstore"
)

// fakeS3 serves bucket "bucket" and answers each key with the failure it
// names, for the failures a healthy MinIO never produces.
func fakeS3(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch strings.TrimPrefix(r.URL.Path, "/bucket") {
		case "", "/":
			// HeadBucket at Open.
		case "/slowdown":
			s3Error(w, http.StatusServiceUnavailable, "SlowDown")
		case "/internal":
			s3Error(w, http.StatusInternalServerError, "InternalError")
		case "/conflict":
			s3Error(w, http.StatusConflict, "ConditionalRequestConflict")
		case "/baddigest":
			s3Error(w, http.StatusBadRequest, "BadDigest")
		case "/invaliddigest":
			s3Error(w, http.StatusBadRequest, "InvalidDigest")
		case "/sha256mismatch":
			s3Error(w, http.StatusBadRequest, "XAmzContentSHA256Mismatch")
		case "/checksummismatch":
			s3Error(w, http.StatusBadRequest, "XAmzContentChecksumMismatch")
		case "/notimplemented":
			s3Error(w, http.StatusNotImplemented, "NotImplemented")
		case "/badrequest":
			s3Error(w, http.StatusBadRequest, "InvalidArgument")
		case "/denied":
			s3Error(w, http.StatusForbidden, "AccessDenied")
		case "/cut":
			// The handler returns short of its Content-Length, so the
			// server drops the connection mid-body.
			w.Header().Set("Content-Length", "1000")
			w.Write(make([]byte, 10))
		case "/dropped":
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return
			}
			conn.Close()
		default:
			t.Errorf("fake S3: unexpected %s %s", r.Method, r.URL)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func s3Error(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>fake %s</Message><RequestId>fake-id</RequestId></Error>`, code, code)
}

func fakeCredentials(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "fake-key")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "fake-secret")
	t.Setenv("AWS_REGION", "us-east-1")
}

func TestErrorClassification(t *testing.T) {
	fakeCredentials(t)
	s, err := Open(t.Context(), Config{Bucket: "bucket", Endpoint: fakeS3(t), PathStyle: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	for _, tc := range []struct {
		key       string
		transient bool
		kind      error
		text      string
	}{
		{"slowdown", true, nil, "SlowDown"},
		{"internal", true, nil, "InternalError"},
		{"conflict", true, nil, "ConditionalRequestConflict"},
		{"dropped", true, nil, "request send failed"},
		// A body or checksum damaged on the way: sending it again may pass.
		{"baddigest", true, nil, "BadDigest"},
		{"invaliddigest", true, nil, "InvalidDigest"},
		{"sha256mismatch", true, nil, "XAmzContentSHA256Mismatch"},
		{"checksummismatch", true, nil, "XAmzContentChecksumMismatch"},
		{"notimplemented", false, nil, "NotImplemented"},
		{"badrequest", false, nil, "InvalidArgument"},
		{"denied", false, objstore.ErrAccessDenied, "AccessDenied"},
	} {
		_, err := s.Put(t.Context(), tc.key, []byte("x"), objstore.PutOptions{})
		switch {
		case err == nil:
			t.Errorf("Put(%s) succeeded; want an error", tc.key)
		case objstore.IsTransient(err) != tc.transient:
			t.Errorf("Put(%s) = %v; want transient %v", tc.key, err, tc.transient)
		case tc.kind != nil && !errors.Is(err, tc.kind):
			t.Errorf("Put(%s) = %v; want %v", tc.key, err, tc.kind)
		case !strings.Contains(err.Error(), tc.text) || !strings.Contains(err.Error(), "s3://bucket/"+tc.key):
			t.Errorf("Put(%s) = %q; want the text to name the object and keep %q", tc.key, err, tc.text)
		}
	}
}

func TestBodyCutShortIsTransient(t *testing.T) {
	fakeCredentials(t)
	s, err := Open(t.Context(), Config{Bucket: "bucket", Endpoint: fakeS3(t), PathStyle: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	body, _, err := s.Get(t.Context(), "cut", 0, -1)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	defer body.Close()
	_, err = io.ReadAll(body)
	if !objstore.IsTransient(err) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("reading a body cut short = %v; want a transient unexpected EOF", err)
	}
}

func TestPathStyle(t *testing.T) {
	fakeCredentials(t)
	requests := make(chan *http.Request, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests <- r
	}))
	defer srv.Close()
	s, err := Open(t.Context(), Config{Bucket: "bucket", Endpoint: srv.URL, PathStyle: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if _, err := s.Put(t.Context(), "vol/00000000", []byte("x"), objstore.PutOptions{}); err != nil {
		t.Fatalf("Put: %v", err)
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, want := range []string{"/bucket", "/bucket/vol/00000000"} {
		r := <-requests
		if r.Host != host || r.URL.Path != want {
			t.Errorf("request to host %q path %q; want host %q path %q", r.Host, r.URL.Path, host, want)
		}
	}
}

func TestOpenUnreachable(t *testing.T) {
	fakeCredentials(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + l.Addr().String()
	l.Close() // nothing listens there now: connections are refused
	start := time.Now()
	_, err = Open(t.Context(), Config{Bucket: "bucket", Endpoint: endpoint, PathStyle: true})
	if !objstore.IsTransient(err) {
		t.Fatalf("Open(closed port) = %v; want a transient error", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Open(closed port) took %v; want a few seconds at most", elapsed)
	}
	mustName(t, err, "bucket", endpoint, "connection refused")
	t.Logf("Open(closed port): %v", err)
}

// TestOpenNoCredentials points the instance-metadata service, the last link
// of the default chain, at a listener that never answers, as on a host where
// it is firewalled: Open must give up with a clear error instead of hanging.
func TestOpenNoCredentials(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	none := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_CONFIG_FILE":                   none,
		"AWS_SHARED_CREDENTIALS_FILE":       none,
		"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://" + l.Addr().String(),
		"AWS_REGION":                        "us-east-1",
	} {
		t.Setenv(k, v)
	}
	for _, k := range []string{
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_EC2_METADATA_DISABLED",
	} {
		t.Setenv(k, "") // empty counts as unset, and t.Setenv restores it
	}
	start := time.Now()
	_, err = Open(t.Context(), Config{Bucket: "bucket", Endpoint: "http://127.0.0.1:1", PathStyle: true})
	elapsed := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "no usable AWS credentials") {
		t.Fatalf("Open without credentials = %v; want a clear credentials error", err)
	}
	if elapsed > credentialsTimeout+2*time.Second {
		t.Errorf("Open without credentials took %v; want at most about %v", elapsed, credentialsTimeout)
	}
	t.Logf("Open without credentials, after %v: %v", elapsed.Round(time.Millisecond), err)
}

// TestTimeoutIsTransient: a network timeout also satisfies
// errors.Is(err, context.DeadlineExceeded), yet unlike the caller's own
// expired context it is worth retrying.
func TestTimeoutIsTransient(t *testing.T) {
	// 192.0.2.1 is TEST-NET-1; the deadline passes before any packet leaves.
	_, dialErr := (&net.Dialer{Timeout: time.Nanosecond}).Dial("tcp", "192.0.2.1:80")
	if ne, ok := errors.AsType[net.Error](dialErr); !ok || !ne.Timeout() || !errors.Is(dialErr, context.DeadlineExceeded) {
		t.Fatalf("dial = %v; want a timeout that is also DeadlineExceeded", dialErr)
	}
	sent := &smithyhttp.RequestSendError{Err: dialErr} // as the SDK wraps it
	if err := classify(t.Context(), sent, objstore.ErrNotFound); !objstore.IsTransient(err) {
		t.Errorf("classify(dial timeout) = %v; want transient", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := classify(ctx, sent, objstore.ErrNotFound); objstore.IsTransient(err) {
		t.Errorf("classify(error after the caller cancelled) = %v; want it not transient", err)
	}
}
