package gcsstore

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/objbacker/objbacker/internal/testenv"
	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/storetest"
)

// TestOneRequestPerPut counts the requests that reach the emulator: a
// block is one upload request, up to the largest block size and past the
// SDK's default 16 MiB chunk, which would split it into a resumable upload.
func TestOneRequestPerPut(t *testing.T) {
	bucket := testenv.NewGCSBucket(t)
	target, err := url.Parse(testenv.GCSEndpoint(t))
	if err != nil {
		t.Fatal(err)
	}
	var requests atomic.Int64
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		// fake-gcs-server tells XML reads from JSON calls by the host name.
		r.Host = target.Host
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	s, err := Open(t.Context(), Config{Bucket: bucket, Endpoint: srv.URL})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	for _, size := range []int{0, 1 << 20, 64 << 20} {
		data := storetest.RandomBytes(size)
		before := requests.Load()
		storetest.MustPut(t, s, "block", data, objstore.PutOptions{ContentType: "application/x-s3backer-block"})
		if n := requests.Load() - before; n != 1 {
			t.Errorf("Put of %d bytes made %d requests; want 1", size, n)
		}
		if got, _ := storetest.MustGet(t, s, "block", 0, -1); !bytes.Equal(got, data) {
			t.Errorf("Get after Put of %d bytes: %d bytes back, not the same", size, len(got))
		}
	}
}

// TestDamagedUploadIsRetried: the emulator refuses an upload whose bytes
// do not match the CRC32C sent with them, and the refusal is worth
// retrying.
func TestDamagedUploadIsRetried(t *testing.T) {
	storetest.DamagedUploads(t, testenv.GCSEndpoint(t), openBucket(t))
}

// TestRetryingResumesBodiesCutInFlight: reads through a proxy that drops
// the connection part-way through every other GET body still deliver the
// object exactly through Retrying, the SDK's CRC32C check included.
func TestRetryingResumesBodiesCutInFlight(t *testing.T) {
	storetest.ResumedBlockReads(t, testenv.GCSEndpoint(t), true, openBucket(t))
}

// openBucket opens a new bucket at an endpoint: the emulator's, or a
// proxy's in front of it.
func openBucket(t *testing.T) storetest.Opener {
	bucket := testenv.NewGCSBucket(t)
	return func(endpoint string) (objstore.Store, error) {
		return Open(t.Context(), Config{Bucket: bucket, Endpoint: endpoint})
	}
}
