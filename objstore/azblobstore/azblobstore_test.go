package azblobstore

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/objbacker/objbacker/internal/testenv"
	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/storetest"
)

// openEmulator opens a fresh container on the test command's Azurite.
func openEmulator(t *testing.T) *Store {
	t.Helper()
	name := testenv.NewAzureContainer(t)
	s, err := Open(t.Context(), Config{Container: name, Endpoint: testenv.AzureEndpoint(t), Parallel: 16})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	testenv.AzureEndpoint(t) // one skip for the suite rather than one per subtest
	storetest.Run(t, func(t *testing.T) objstore.Store { return openEmulator(t) })
}

func TestOpenMissingContainer(t *testing.T) {
	endpoint := testenv.AzureEndpoint(t)
	const name = "objb-no-such-container"
	_, err := Open(t.Context(), Config{Container: name, Endpoint: endpoint})
	if !errors.Is(err, objstore.ErrBucketNotFound) || objstore.IsTransient(err) {
		t.Fatalf("Open(missing container) = %v; want ErrBucketNotFound, not transient", err)
	}
	mustName(t, err, name, endpoint, "ContainerNotFound")
	t.Logf("Open(missing container): %v", err)
}

// TestOpenWrongKey: Azurite checks the signature of every request, as Azure
// does, so a wrong account key is refused at Open.
func TestOpenWrongKey(t *testing.T) {
	name := testenv.NewAzureContainer(t)
	endpoint := testenv.AzureEndpoint(t)
	// A valid key (base64 of 64 bytes), but not the account's.
	t.Setenv(keyEnv, strings.Repeat("A", 86)+"==")
	_, err := Open(t.Context(), Config{Container: name, Endpoint: endpoint})
	if !errors.Is(err, objstore.ErrAccessDenied) || objstore.IsTransient(err) {
		t.Fatalf("Open(wrong key) = %v; want ErrAccessDenied, not transient", err)
	}
	mustName(t, err, name, endpoint, "AuthorizationFailure")
	t.Logf("Open(wrong key): %v", err)
}

// TestConnectionString: the connection string alone names the account,
// its key and the endpoint.
func TestConnectionString(t *testing.T) {
	name := testenv.NewAzureContainer(t)
	endpoint := testenv.AzureEndpoint(t)
	account, key := envOr(t, accountEnv), envOr(t, keyEnv)
	t.Setenv(connectionStringEnv, "DefaultEndpointsProtocol=http;AccountName="+account+";AccountKey="+key+";BlobEndpoint="+endpoint+";")
	t.Setenv(accountEnv, "")
	t.Setenv(keyEnv, "")
	s, err := Open(t.Context(), Config{Container: name})
	if err != nil {
		t.Fatalf("Open with %s: %v", connectionStringEnv, err)
	}
	defer s.Close()
	storetest.MustPut(t, s, "vol/00000000", []byte("block"), objstore.PutOptions{})
	if got, _ := storetest.MustGet(t, s, "vol/00000000", 0, -1); string(got) != "block" {
		t.Errorf("Get = %q; want %q", got, "block")
	}
	// The URL may not name another account or endpoint at the same time.
	if _, err := Open(t.Context(), Config{Container: name, Endpoint: endpoint}); !errors.Is(err, objstore.ErrInvalidURL) {
		t.Errorf("Open with %s and an endpoint = %v; want ErrInvalidURL", connectionStringEnv, err)
	}
}

func TestOpenUnreachable(t *testing.T) {
	envOr(t, keyEnv)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + l.Addr().String() + "/devstoreaccount1"
	l.Close() // nothing listens there now: connections are refused
	start := time.Now()
	_, err = Open(t.Context(), Config{Container: "container", Endpoint: endpoint})
	if !objstore.IsTransient(err) {
		t.Fatalf("Open(closed port) = %v; want a transient error", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Open(closed port) took %v; want a few seconds at most", elapsed)
	}
	mustName(t, err, "container", endpoint, "connection refused")
	t.Logf("Open(closed port): %v", err)
}

func TestBadConfig(t *testing.T) {
	t.Setenv(connectionStringEnv, "")
	t.Setenv(accountEnv, "")
	t.Setenv(keyEnv, "")
	for _, cfg := range []Config{
		{Container: ""},
		{Container: "c"}, // no account, no endpoint
		{Container: "c", Account: "a", Endpoint: "127.0.0.1:10000"},
		{Container: "c", Endpoint: "ftp://host/account"},
	} {
		if _, err := Open(t.Context(), cfg); !errors.Is(err, objstore.ErrInvalidURL) {
			t.Errorf("Open(%+v) = %v; want ErrInvalidURL", cfg, err)
		}
	}
}

// envOr returns the variable the test command sets, or fails or skips.
func envOr(t *testing.T, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		testenv.Missing(t, "Azure account: %s is not set", name)
	}
	return v
}

func mustName(t *testing.T, err error, names ...string) {
	t.Helper()
	for _, name := range names {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %q", err, name)
		}
	}
}

// TestDeletedContainer: requests on the objects of a container that is gone
// fail with ErrBucketNotFound. A missing object instead would make a device
// read its blocks as zeros and count its deletes as done.
func TestDeletedContainer(t *testing.T) {
	endpoint := testenv.AzureEndpoint(t)
	ctx := t.Context()
	client := testenv.AzureClient(t, endpoint)
	name := "objb-deleted-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if _, err := client.CreateContainer(ctx, name, nil); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, Config{Container: name, Endpoint: endpoint})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const key = "vol/00000000"
	storetest.MustPut(t, s, key, []byte("block"), objstore.PutOptions{})
	if _, err := client.DeleteContainer(ctx, name, nil); err != nil {
		t.Fatal(err)
	}
	storetest.BucketGone(t, s, key)
}
