package testenv

import (
	"errors"
	"net/url"
	"testing"

	"cloud.google.com/go/storage"
)

func TestNewGCSBucketRemovesItsBucket(t *testing.T) {
	client := GCSClient(t, GCSEndpoint(t))
	var bucket string
	t.Run("user", func(t *testing.T) {
		bucket = NewGCSBucket(t)
		w := client.Bucket(bucket).Object("left/behind").NewWriter(t.Context())
		w.Write([]byte("x"))
		if err := w.Close(); err != nil {
			t.Fatalf("writing an object: %v", err)
		}
	})
	if _, err := client.Bucket(bucket).Attrs(t.Context()); !errors.Is(err, storage.ErrBucketNotExist) {
		t.Errorf("bucket %s after its test ended: %v; want ErrBucketNotExist", bucket, err)
	}
}

func TestGCSURL(t *testing.T) {
	endpoint := GCSEndpoint(t)
	raw := GCSURL(t, "vol/a")
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("GCSURL = %q: %v", raw, err)
	}
	if u.Scheme != "gs" || u.Path != "/vol/a" || u.Query().Get("endpoint") != endpoint {
		t.Errorf("GCSURL = %q; want gs://BUCKET/vol/a?endpoint=%s", raw, endpoint)
	}
	if _, err := GCSClient(t, endpoint).Bucket(u.Host).Attrs(t.Context()); err != nil {
		t.Errorf("bucket %s: %v; want it to exist", u.Host, err)
	}
}
