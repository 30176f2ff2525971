package azblobstore

import (
	"bytes"
	"crypto/md5"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/objbacker/objbacker/internal/testenv"
	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/storetest"
)

// TestOneRequestPerPut counts the requests that reach Azurite: a block is
// one Put Blob, up to the largest block size, never staged blocks and a
// commit.
func TestOneRequestPerPut(t *testing.T) {
	name := testenv.NewAzureContainer(t)
	endpoint := testenv.AzureEndpoint(t)
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	var requests atomic.Int64
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: target.Scheme, Host: target.Host})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	s, err := Open(t.Context(), Config{Container: name, Endpoint: srv.URL + target.Path})
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

// TestStoredForm looks at a blob with Azure's own client: the metadata
// names are the C# identifiers of metadata.go, and the blob keeps the MD5
// that reads are checked against.
func TestStoredForm(t *testing.T) {
	s := openEmulator(t)
	data := storetest.RandomBytes(4096)
	storetest.MustPut(t, s, "vol/00000000", data, objstore.PutOptions{Metadata: map[string]string{
		"s3backer-blocksize": "4096",
		"s3backer-filesize":  "1048576",
	}})
	props, err := testenv.AzureClient(t, testenv.AzureEndpoint(t)).NewContainerClient(s.name).
		NewBlobClient("vol/00000000").GetProperties(t.Context(), nil)
	if err != nil {
		t.Fatalf("GetProperties: %v", err)
	}
	names := map[string]bool{}
	for name := range props.Metadata {
		names[strings.ToLower(name)] = true
	}
	if len(names) != 2 || !names["s3backer_blocksize"] || !names["s3backer_filesize"] {
		t.Errorf("stored metadata names %v; want s3backer_blocksize and s3backer_filesize", names)
	}
	if sum := md5.Sum(data); !bytes.Equal(props.ContentMD5, sum[:]) {
		t.Errorf("stored Content-MD5 %x; want %x", props.ContentMD5, sum)
	}
}

// TestDamagedUploadIsRetried: Azurite refuses an upload whose bytes do not
// match the MD5 sent with them, and the refusal is worth retrying.
func TestDamagedUploadIsRetried(t *testing.T) {
	storetest.DamagedUploads(t, testenv.AzureEndpoint(t), openContainer(t))
}

// TestRetryingResumesBodiesCutInFlight: reads through a proxy that drops
// the connection part-way through every other GET body still deliver the
// object exactly through Retrying, the Content-MD5 check included.
func TestRetryingResumesBodiesCutInFlight(t *testing.T) {
	storetest.ResumedBlockReads(t, testenv.AzureEndpoint(t), false, openContainer(t))
}

// openContainer opens a new container at an endpoint: Azurite's, or a
// proxy's in front of it.
func openContainer(t *testing.T) storetest.Opener {
	name := testenv.NewAzureContainer(t)
	return func(endpoint string) (objstore.Store, error) {
		return Open(t.Context(), Config{Container: name, Endpoint: endpoint})
	}
}
