package azblobstore

import (
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/objbacker/objbacker/objstore"
)

// fakeAzure serves container "container" of account "account" and answers
// each upload with the failure its blob name asks for, for the failures a
// healthy Azurite never produces. It checks no signatures.
func fakeAzure(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/account/container" && r.URL.Query().Get("restype") == "container":
			// The container's properties at Open.
			w.Header().Set("ETag", `"0x1"`)
		case r.URL.Path == "/account/container/corrupt" && r.Method == http.MethodGet:
			// A read whose bytes do not match the MD5 Azure keeps for them.
			sum := md5.Sum([]byte("other bytes"))
			w.Header().Set("Content-MD5", base64.StdEncoding.EncodeToString(sum[:]))
			w.Header().Set("ETag", `"0x2"`)
			w.Write([]byte("some bytes"))
		case strings.HasPrefix(r.URL.Path, "/account/container/") && r.Method == http.MethodPut:
			io.Copy(io.Discard, r.Body)
			answerUpload(t, w, strings.TrimPrefix(r.URL.Path, "/account/container/"))
		default:
			t.Errorf("fake Azure: unexpected %s %s", r.Method, r.URL)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/account"
}

func answerUpload(t *testing.T, w http.ResponseWriter, name string) {
	switch name {
	case "busy":
		azureError(w, http.StatusServiceUnavailable, "ServerBusy")
	case "throttled":
		azureError(w, http.StatusTooManyRequests, "TooManyRequests")
	case "internal":
		azureError(w, http.StatusInternalServerError, "InternalError")
	case "md5mismatch":
		azureError(w, http.StatusBadRequest, "Md5Mismatch")
	case "crc64mismatch":
		azureError(w, http.StatusBadRequest, "Crc64Mismatch")
	case "azuritemismatch":
		// Azurite's answer to the same, which is not Azure's.
		azureErrorText(w, http.StatusBadRequest, "InvalidOperation", "Provided contentMD5 doesn't match.")
	case "invalidoperation":
		azureErrorText(w, http.StatusBadRequest, "InvalidOperation", "The size of the request body 1 mismatches the content-length 2.")
	case "notimplemented":
		azureError(w, http.StatusNotImplemented, "NotImplemented")
	case "badrequest":
		azureError(w, http.StatusBadRequest, "InvalidHeaderValue")
	case "denied":
		azureError(w, http.StatusForbidden, "AuthorizationPermissionMismatch")
	case "exists":
		azureError(w, http.StatusConflict, "BlobAlreadyExists")
	case "leased":
		azureError(w, http.StatusPreconditionFailed, "LeaseIdMissing")
	case "dropped":
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		conn.Close()
	default:
		t.Errorf("fake Azure: unexpected upload of %q", name)
	}
}

func azureError(w http.ResponseWriter, status int, code string) {
	azureErrorText(w, status, code, "fake "+code)
}

func azureErrorText(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("x-ms-error-code", code)
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="utf-8"?><Error><Code>%s</Code><Message>%s</Message></Error>`, code, message)
}

// openFake opens the fake service with an account key, as the tests of the
// emulator do.
func openFake(t *testing.T) *Store {
	t.Helper()
	t.Setenv(connectionStringEnv, "")
	t.Setenv(keyEnv, base64.StdEncoding.EncodeToString(make([]byte, 64)))
	s, err := Open(t.Context(), Config{Container: "container", Account: "account", Endpoint: fakeAzure(t)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestErrorClassification(t *testing.T) {
	s := openFake(t)
	for _, tc := range []struct {
		key       string
		transient bool
		kind      error
		text      string
	}{
		{"busy", true, nil, "ServerBusy"},
		{"throttled", true, nil, "TooManyRequests"},
		{"internal", true, nil, "InternalError"},
		{"dropped", true, nil, "EOF"},
		// Bytes damaged on the way: sending them again may pass.
		{"md5mismatch", true, nil, "Md5Mismatch"},
		{"crc64mismatch", true, nil, "Crc64Mismatch"},
		{"azuritemismatch", true, nil, "InvalidOperation"},
		{"invalidoperation", false, nil, "InvalidOperation"},
		{"notimplemented", false, nil, "NotImplemented"},
		{"badrequest", false, nil, "InvalidHeaderValue"},
		{"denied", false, objstore.ErrAccessDenied, "AuthorizationPermissionMismatch"},
		{"exists", false, objstore.ErrPreconditionFailed, "BlobAlreadyExists"},
		{"leased", false, objstore.ErrPreconditionFailed, "LeaseIdMissing"},
	} {
		_, err := s.Put(t.Context(), tc.key, []byte("x"), objstore.PutOptions{})
		switch {
		case err == nil:
			t.Errorf("Put(%s) succeeded; want an error", tc.key)
		case objstore.IsTransient(err) != tc.transient:
			t.Errorf("Put(%s) = %v; want transient %v", tc.key, err, tc.transient)
		case tc.kind != nil && !errors.Is(err, tc.kind):
			t.Errorf("Put(%s) = %v; want %v", tc.key, err, tc.kind)
		case !strings.Contains(err.Error(), tc.text) || !strings.Contains(err.Error(), "azblob://container/"+tc.key):
			t.Errorf("Put(%s) = %q; want the text to name the object and keep %q", tc.key, err, tc.text)
		case strings.Contains(err.Error(), "\n"):
			t.Errorf("Put(%s) = %q; want one line", tc.key, err)
		}
	}
}

// TestCorruptReadIsTransient: bytes that do not match the MD5 Azure holds
// are ErrCorrupt, and worth reading again.
func TestCorruptReadIsTransient(t *testing.T) {
	s := openFake(t)
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
