package gcsstore

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/objbacker/objbacker/internal/testenv"
	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/internal/httpnet"
)

// noEmulator makes the store look for real credentials even when the
// developer's environment names an emulator.
func noEmulator(t *testing.T) {
	t.Setenv(emulatorEnv, "")
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "")
	// gcloud's own login file must not be found either.
	t.Setenv("CLOUDSDK_CONFIG", t.TempDir())
}

// TestOpenRefusedCredentials: a key the token service refuses, as after it
// was revoked, is ErrAccessDenied at Open, and no storage request is made.
func TestOpenRefusedCredentials(t *testing.T) {
	noEmulator(t)
	testenv.RefusedGCSCredentials(t)
	_, err := Open(t.Context(), Config{Bucket: "bucket"})
	if !errors.Is(err, objstore.ErrAccessDenied) || objstore.IsTransient(err) {
		t.Fatalf("Open(refused key) = %v; want ErrAccessDenied, not transient", err)
	}
	mustName(t, err, `bucket "bucket"`, "invalid_grant")
	t.Logf("Open(refused key): %v", err)
}

// TestOpenNoCredentials: with no credentials file, the search ends at the
// metadata server of a Google Cloud machine; pointed at one that never
// answers, as on a host where it is firewalled, Open must give up with a
// clear error instead of hanging.
func TestOpenNoCredentials(t *testing.T) {
	noEmulator(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("GCE_METADATA_HOST", l.Addr().String())
	start := time.Now()
	_, err = Open(t.Context(), Config{Bucket: "bucket"})
	elapsed := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "no usable Google credentials") {
		t.Fatalf("Open without credentials = %v; want a clear credentials error", err)
	}
	if elapsed > credentialsTimeout+2*time.Second {
		t.Errorf("Open without credentials took %v; want at most about %v", elapsed, credentialsTimeout)
	}
	t.Logf("Open without credentials, after %v: %v", elapsed.Round(time.Millisecond), err)
}

// TestOpenWithCredentials: with a key the token service accepts, every
// request to an https endpoint carries the token, and a request to an
// http:// endpoint (an emulator) carries none.
func TestOpenWithCredentials(t *testing.T) {
	noEmulator(t)
	const token = "objbacker-test-token"
	testenv.GCSServiceAccount(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":3600}`, token)
	}))
	var authorized, anonymous atomic.Int64
	gcs := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("Authorization") {
		case "Bearer " + token:
			authorized.Add(1)
		case "":
			anonymous.Add(1)
		default:
			t.Errorf("request with Authorization %q", r.Header.Get("Authorization"))
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"kind":"storage#objects"}`))
	})

	tlsSrv := httptest.NewTLSServer(gcs)
	defer tlsSrv.Close()
	transport := httpnet.NewTransport(0)
	transport.TLSClientConfig = tlsSrv.Client().Transport.(*http.Transport).TLSClientConfig
	s, err := open(t.Context(), Config{Bucket: "bucket", Endpoint: tlsSrv.URL}, transport)
	if err != nil {
		t.Fatalf("Open(https endpoint) with a granted token: %v", err)
	}
	s.Close()
	if authorized.Load() != 1 || anonymous.Load() != 0 {
		t.Errorf("https endpoint: %d requests with the token, %d without; want 1 and 0", authorized.Load(), anonymous.Load())
	}

	plainSrv := httptest.NewServer(gcs)
	defer plainSrv.Close()
	authorized.Store(0)
	s, err = Open(t.Context(), Config{Bucket: "bucket", Endpoint: plainSrv.URL})
	if err != nil {
		t.Fatalf("Open(http endpoint): %v", err)
	}
	s.Close()
	if authorized.Load() != 0 || anonymous.Load() != 1 {
		t.Errorf("http endpoint: %d requests with the token, %d without; want 0 and 1", authorized.Load(), anonymous.Load())
	}
}
