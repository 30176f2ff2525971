package storeurl

import (
	"errors"
	"net/url"
	"testing"

	"github.com/objbacker/objbacker/internal/testenv"
	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/storetest"
)

// TestCloudURLPrefixes: a path after the bucket or container is a prefix,
// as for s3://, so "gs://b/vol" keeps block 0 in the object "vol/00000000".
func TestCloudURLPrefixes(t *testing.T) {
	t.Run("gs", func(t *testing.T) {
		raw := testenv.GCSURL(t, "vol")
		putBlockZero(t, raw)
		u, _ := url.Parse(raw)
		client := testenv.GCSClient(t, testenv.GCSEndpoint(t))
		if _, err := client.Bucket(u.Host).Object("vol/00000000").Attrs(t.Context()); err != nil {
			t.Errorf("%s: object vol/00000000 not in the bucket: %v", raw, err)
		}
	})
	t.Run("azblob", func(t *testing.T) {
		raw := testenv.AzureURL(t, "vol")
		putBlockZero(t, raw)
		u, _ := url.Parse(raw)
		client := testenv.AzureClient(t, testenv.AzureEndpoint(t))
		if _, err := client.NewContainerClient(u.Host).NewBlobClient("vol/00000000").GetProperties(t.Context(), nil); err != nil {
			t.Errorf("%s: blob vol/00000000 not in the container: %v", raw, err)
		}
	})
}

func putBlockZero(t *testing.T, raw string) {
	t.Helper()
	s, err := Open(t.Context(), raw, Options{Parallel: 4})
	if err != nil {
		t.Fatalf("Open(%s): %v", raw, err)
	}
	defer s.Close()
	storetest.MustPut(t, s, "00000000", []byte("block 0"), objstore.PutOptions{})
}

func TestBadCloudURLs(t *testing.T) {
	for _, raw := range []string{
		"gs:///prefix",
		"gs://bucket/p?region=us",
		"gs://bucket/p?endpoint=ftp://host",
		"azblob:///prefix",
		"azblob://container/p?path_style=true",
		"azblob://container/p?account=a&endpoint=127.0.0.1:10000",
	} {
		if _, err := Open(t.Context(), raw, Options{}); !errors.Is(err, objstore.ErrInvalidURL) {
			t.Errorf("Open(%q): err = %v, want ErrInvalidURL", raw, err)
		}
	}
}
