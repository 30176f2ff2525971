package gcsstore

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/objbacker/objbacker/internal/testenv"
	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/storetest"
)

// openEmulator opens a fresh bucket on the test command's fake-gcs-server.
func openEmulator(t *testing.T) *Store {
	t.Helper()
	bucket := testenv.NewGCSBucket(t)
	s, err := Open(t.Context(), Config{Bucket: bucket, Endpoint: testenv.GCSEndpoint(t), Parallel: 16})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	testenv.GCSEndpoint(t) // one skip for the suite rather than one per subtest
	storetest.Run(t, func(t *testing.T) objstore.Store { return openEmulator(t) })
}

func TestOpenMissingBucket(t *testing.T) {
	endpoint := testenv.GCSEndpoint(t)
	const bucket = "objb-no-such-bucket"
	_, err := Open(t.Context(), Config{Bucket: bucket, Endpoint: endpoint})
	if !errors.Is(err, objstore.ErrBucketNotFound) || objstore.IsTransient(err) {
		t.Fatalf("Open(missing bucket) = %v; want ErrBucketNotFound, not transient", err)
	}
	mustName(t, err, bucket, endpoint)
	t.Logf("Open(missing bucket): %v", err)
}

// TestEmulatorVariable: with STORAGE_EMULATOR_HOST and no endpoint, the
// store goes to the emulator, without credentials.
func TestEmulatorVariable(t *testing.T) {
	bucket := testenv.NewGCSBucket(t)
	host := strings.TrimPrefix(testenv.GCSEndpoint(t), "http://")
	t.Setenv("STORAGE_EMULATOR_HOST", host)
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/credentials.json")
	s, err := Open(t.Context(), Config{Bucket: bucket})
	if err != nil {
		t.Fatalf("Open with %s=%s: %v", emulatorEnv, host, err)
	}
	defer s.Close()
	storetest.MustPut(t, s, "vol/00000000", []byte("block"), objstore.PutOptions{})
	if got, _ := storetest.MustGet(t, s, "vol/00000000", 0, -1); string(got) != "block" {
		t.Errorf("Get = %q; want %q", got, "block")
	}
}

func TestOpenUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + l.Addr().String()
	l.Close() // nothing listens there now: connections are refused
	start := time.Now()
	_, err = Open(t.Context(), Config{Bucket: "bucket", Endpoint: endpoint})
	if !objstore.IsTransient(err) {
		t.Fatalf("Open(closed port) = %v; want a transient error", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Open(closed port) took %v; want a few seconds at most", elapsed)
	}
	mustName(t, err, "bucket", endpoint, "connection refused")
	t.Logf("Open(closed port): %v", err)
}

func TestBadEndpoint(t *testing.T) {
	for _, endpoint := range []string{"127.0.0.1:4443", "ftp://host", "http://", "http://host/storage/v1/"} {
		if _, err := Open(t.Context(), Config{Bucket: "bucket", Endpoint: endpoint}); !errors.Is(err, objstore.ErrInvalidURL) {
			t.Errorf("Open(endpoint %q) = %v; want ErrInvalidURL", endpoint, err)
		}
	}
}

func mustName(t *testing.T, err error, names ...string) {
	t.Helper()
	for _, name := range names {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %q", err, name)
		}
	}
}

// TestDeletedBucketIsNotAMissingObject: the SDK reports a request on an
// object of a bucket that is gone as a missing object. A device would read
// its blocks as zeros and count its deletes as done; the store must say
// that the bucket is gone instead.
func TestDeletedBucketIsNotAMissingObject(t *testing.T) {
	endpoint := testenv.GCSEndpoint(t)
	ctx := t.Context()
	client := testenv.GCSClient(t, endpoint)
	bucket := "objb-deleted-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := client.Bucket(bucket).Create(ctx, "objbacker-test", nil); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, Config{Bucket: bucket, Endpoint: endpoint})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const key = "vol/00000000"
	storetest.MustPut(t, s, key, []byte("block"), objstore.PutOptions{})
	if err := s.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, key); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("Stat of a deleted object in a live bucket = %v; want ErrNotFound", err)
	}
	if err := client.Bucket(bucket).Delete(ctx); err != nil {
		t.Fatal(err)
	}
	storetest.BucketGone(t, s, key)
}
