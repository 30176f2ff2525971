package s3store

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/objbacker/objbacker/internal/testenv"
	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/storetest"
)

// openMinIO opens a fresh bucket on the test command's MinIO server.
func openMinIO(t *testing.T) *Store {
	t.Helper()
	bucket := testenv.NewS3Bucket(t)
	s, err := Open(t.Context(), Config{Bucket: bucket, Endpoint: testenv.S3Endpoint(t), PathStyle: true, Parallel: 16})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	testenv.S3Endpoint(t) // one skip for the suite rather than one per subtest
	storetest.Run(t, func(t *testing.T) objstore.Store { return openMinIO(t) })
}

func TestOpenMissingBucket(t *testing.T) {
	endpoint := testenv.S3Endpoint(t)
	const bucket = "objb-no-such-bucket"
	_, err := Open(t.Context(), Config{Bucket: bucket, Endpoint: endpoint, PathStyle: true})
	if !errors.Is(err, objstore.ErrBucketNotFound) {
		t.Fatalf("Open(missing bucket) = %v; want ErrBucketNotFound", err)
	}
	mustName(t, err, bucket, endpoint)
	t.Logf("Open(missing bucket): %v", err)
}

func TestOpenWrongSecret(t *testing.T) {
	bucket := testenv.NewS3Bucket(t)
	endpoint := testenv.S3Endpoint(t)
	t.Setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
	_, err := Open(t.Context(), Config{Bucket: bucket, Endpoint: endpoint, PathStyle: true})
	if !errors.Is(err, objstore.ErrAccessDenied) || objstore.IsTransient(err) {
		t.Fatalf("Open(wrong secret) = %v; want ErrAccessDenied, not transient", err)
	}
	mustName(t, err, bucket, endpoint)
	t.Logf("Open(wrong secret): %v", err)
}

// TestObjectErrors checks the classification of per-object answers from a
// real server, with the SDK's text kept for the logs.
func TestObjectErrors(t *testing.T) {
	s := openMinIO(t)
	ctx := t.Context()
	_, err := s.Stat(ctx, "absent")
	mustBe(t, "Stat(absent)", err, objstore.ErrNotFound, "404")
	_, _, err = s.Get(ctx, "absent", 0, -1)
	mustBe(t, "Get(absent)", err, objstore.ErrNotFound, "NoSuchKey")
	_, err = s.Put(ctx, "absent", []byte("x"), objstore.PutOptions{IfMatch: "0123456789abcdef0123456789abcdef"})
	mustBe(t, "IfMatch Put(absent)", err, objstore.ErrNotFound, "NoSuchKey")
	if err := s.Delete(ctx, "absent"); err != nil {
		t.Errorf("Delete(absent) = %v; want nil", err)
	}

	put, err := s.Put(ctx, "there", []byte("x"), objstore.PutOptions{})
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	_, err = s.Put(ctx, "there", []byte("y"), objstore.PutOptions{IfNoneMatch: true})
	mustBe(t, "IfNoneMatch Put(there)", err, objstore.ErrPreconditionFailed, "PreconditionFailed")
	if strings.Contains(put.ETag, `"`) || put.ETag == "" {
		t.Errorf("Put ETag %q; want a non-empty ETag without quotes", put.ETag)
	}
}

// TestBucketRemoved checks that a bucket vanishing under an open store is
// reported as such, not as a missing object.
func TestBucketRemoved(t *testing.T) {
	bucket := testenv.NewS3Bucket(t)
	s, err := Open(t.Context(), Config{Bucket: bucket, Endpoint: testenv.S3Endpoint(t), PathStyle: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if _, err := s.client.DeleteBucket(t.Context(), &s3.DeleteBucketInput{Bucket: &bucket}); err != nil {
		t.Fatalf("DeleteBucket: %v", err)
	}
	// Cleanups run last-in first-out: this one gives NewS3Bucket's its
	// bucket back to remove.
	t.Cleanup(func() {
		if _, err := s.client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
			t.Errorf("recreating bucket: %v", err)
		}
	})
	_, _, err = s.Get(t.Context(), "k", 0, -1)
	mustBe(t, "Get", err, objstore.ErrBucketNotFound, "NoSuchBucket")
	_, err = s.Put(t.Context(), "k", []byte("x"), objstore.PutOptions{})
	mustBe(t, "Put", err, objstore.ErrBucketNotFound, "NoSuchBucket")
	err = s.List(t.Context(), "", "", func(objstore.ObjectInfo) error { return nil })
	mustBe(t, "List", err, objstore.ErrBucketNotFound, "NoSuchBucket")
	// A device counts a DELETE that succeeds as a block stored as zeros.
	err = s.Delete(t.Context(), "k")
	mustBe(t, "Delete", err, objstore.ErrBucketNotFound, "NoSuchBucket")
	// A HEAD answer has no error code; the store asks for the bucket.
	_, err = s.Stat(t.Context(), "k")
	mustBe(t, "Stat", err, objstore.ErrBucketNotFound, "404")
}

// TestLargeRangedRead reads a block-sized object in pieces that straddle
// SDK buffer sizes, the block core's main access pattern.
func TestLargeRangedRead(t *testing.T) {
	s := openMinIO(t)
	data := storetest.RandomBytes(1 << 20)
	storetest.MustPut(t, s, "block", data, objstore.PutOptions{})
	for _, r := range []struct{ off, n int64 }{{0, 1 << 20}, {4095, 8193}, {1<<20 - 1, 1}, {512 << 10, -1}} {
		got, attrs := storetest.MustGet(t, s, "block", r.off, r.n)
		end := int64(len(data))
		if r.n >= 0 {
			end = r.off + r.n
		}
		if !bytes.Equal(got, data[r.off:end]) || attrs.Size != 1<<20 {
			t.Errorf("Get(%d, %d): %d bytes, Size %d; want %d bytes of the object, Size %d", r.off, r.n, len(got), attrs.Size, end-r.off, 1<<20)
		}
	}
}

func mustBe(t *testing.T, op string, err, kind error, text string) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Errorf("%s = %v; want %v", op, err, kind)
		return
	}
	if objstore.IsTransient(err) {
		t.Errorf("%s = %v; want it not transient", op, err)
	}
	if !strings.Contains(err.Error(), text) {
		t.Errorf("%s = %q; want the server's %q kept in the text", op, err, text)
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
