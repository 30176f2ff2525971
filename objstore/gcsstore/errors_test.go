package gcsstore

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/objbacker/objbacker/objstore"
)

// fakeGCS serves bucket "bucket" and answers each upload with the failure
// its object name asks for, for the failures a healthy emulator never
// produces.
func fakeGCS(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/storage/v1/b/bucket/o":
			// The listing at Open.
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"kind":"storage#objects"}`))
		case r.URL.Path == "/bucket/corrupt":
			// A read whose bytes do not match the CRC32C GCS sends with them.
			crc := make([]byte, 4)
			binary.BigEndian.PutUint32(crc, crc32.Checksum([]byte("other bytes"), castagnoli))
			w.Header().Set("X-Goog-Hash", "crc32c="+base64.StdEncoding.EncodeToString(crc))
			w.Header().Set("X-Goog-Generation", "1")
			w.Write([]byte("some bytes"))
		case r.URL.Path == "/upload/storage/v1/b/bucket/o":
			io.Copy(io.Discard, r.Body)
			answerUpload(t, w, r.URL.Query().Get("name"))
		default:
			t.Errorf("fake GCS: unexpected %s %s", r.Method, r.URL)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func answerUpload(t *testing.T, w http.ResponseWriter, name string) {
	switch name {
	case "throttled":
		gcsError(w, http.StatusTooManyRequests, "rateLimitExceeded")
	case "unavailable":
		gcsError(w, http.StatusServiceUnavailable, "backendError")
	case "internal":
		gcsError(w, http.StatusInternalServerError, "internalError")
	case "crcmismatch":
		gcsErrorText(w, http.StatusBadRequest, "invalid", `Provided CRC32C \"AAAAAA==\" doesn't match calculated CRC32C \"2HvlZg==\".`)
	case "md5mismatch":
		gcsErrorText(w, http.StatusBadRequest, "invalid", `Provided MD5 hash \"1B2M2Y8AsgTpgAmY7PhCfg==\" doesn't match calculated MD5 hash \"kAFQmDzST7DWlj99KOF/cg==\".`)
	case "notimplemented":
		gcsError(w, http.StatusNotImplemented, "notImplemented")
	case "badrequest":
		gcsError(w, http.StatusBadRequest, "invalid")
	case "denied":
		gcsError(w, http.StatusForbidden, "forbidden")
	case "unauthenticated":
		gcsError(w, http.StatusUnauthorized, "required")
	case "dropped":
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		conn.Close()
	default:
		t.Errorf("fake GCS: unexpected upload of %q", name)
	}
}

func gcsError(w http.ResponseWriter, status int, reason string) {
	gcsErrorText(w, status, reason, "fake "+reason)
}

// gcsErrorText answers as GCS does; message is JSON-escaped already.
func gcsErrorText(w http.ResponseWriter, status int, reason, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"code":%d,"message":"%s","errors":[{"reason":%q,"message":"%s","domain":"global"}]}}`, status, message, reason, message)
}

func TestErrorClassification(t *testing.T) {
	s, err := Open(t.Context(), Config{Bucket: "bucket", Endpoint: fakeGCS(t)})
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
		{"throttled", true, nil, "rateLimitExceeded"},
		{"unavailable", true, nil, "backendError"},
		{"internal", true, nil, "internalError"},
		{"dropped", true, nil, "EOF"},
		// Bytes damaged on the way: sending them again may pass.
		{"crcmismatch", true, nil, "doesn't match calculated CRC32C"},
		{"md5mismatch", true, nil, "doesn't match calculated MD5"},
		{"notimplemented", false, nil, "notImplemented"},
		{"badrequest", false, nil, "invalid"},
		{"denied", false, objstore.ErrAccessDenied, "forbidden"},
		{"unauthenticated", false, objstore.ErrAccessDenied, "required"},
	} {
		_, err := s.Put(t.Context(), tc.key, []byte("x"), objstore.PutOptions{})
		switch {
		case err == nil:
			t.Errorf("Put(%s) succeeded; want an error", tc.key)
		case objstore.IsTransient(err) != tc.transient:
			t.Errorf("Put(%s) = %v; want transient %v", tc.key, err, tc.transient)
		case tc.kind != nil && !errors.Is(err, tc.kind):
			t.Errorf("Put(%s) = %v; want %v", tc.key, err, tc.kind)
		case !strings.Contains(err.Error(), tc.text) || !strings.Contains(err.Error(), "gs://bucket/"+tc.key):
			t.Errorf("Put(%s) = %q; want the text to name the object and keep %q", tc.key, err, tc.text)
		}
	}
}

// TestCorruptReadIsTransient: bytes that do not match the checksum GCS
// holds are ErrCorrupt, and worth reading again.
func TestCorruptReadIsTransient(t *testing.T) {
	s, err := Open(t.Context(), Config{Bucket: "bucket", Endpoint: fakeGCS(t)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	body, _, err := s.Get(t.Context(), "corrupt", 0, -1)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	defer body.Close()
	_, err = io.ReadAll(body)
	if !errors.Is(err, objstore.ErrCorrupt) || !objstore.IsTransient(err) {
		t.Errorf("reading a corrupt body = %v; want a transient ErrCorrupt", err)
	}
}

// TestImpossibleIfMatch: an ETag that is no generation can match nothing,
// and is refused without a request.
func TestImpossibleIfMatch(t *testing.T) {
	s, err := Open(t.Context(), Config{Bucket: "bucket", Endpoint: fakeGCS(t)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	for _, opts := range []objstore.PutOptions{
		{IfMatch: `"0x8DC0123456789AB"`},
		{IfMatch: "0"},
		{IfMatch: "12", IfNoneMatch: true},
	} {
		if _, err := s.Put(t.Context(), "k", []byte("x"), opts); !errors.Is(err, objstore.ErrPreconditionFailed) {
			t.Errorf("Put(%+v) = %v; want ErrPreconditionFailed", opts, err)
		}
	}
}
