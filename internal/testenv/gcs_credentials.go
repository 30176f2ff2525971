package testenv

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// RefusedGCSCredentials points Application Default Credentials at a
// service-account key whose token requests a local token service refuses,
// as Google's refuses a revoked key ("invalid_grant"), and unsets
// STORAGE_EMULATOR_HOST so that the key is used. Nothing leaves the
// machine: the refusal comes before any storage request.
func RefusedGCSCredentials(t *testing.T) {
	t.Helper()
	GCSServiceAccount(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`))
	}))
}

// GCSServiceAccount points Application Default Credentials at a fresh
// service-account key whose token requests go to tokens, served locally,
// and unsets STORAGE_EMULATOR_HOST so that the key is used.
func GCSServiceAccount(t *testing.T, tokens http.Handler) {
	t.Helper()
	srv := httptest.NewServer(tokens)
	t.Cleanup(srv.Close)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     "objbacker-test",
		"private_key_id": "test-key",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   "objbacker@objbacker-test.iam.gserviceaccount.com",
		"client_id":      "1",
		"token_uri":      srv.URL,
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", path)
	t.Setenv("STORAGE_EMULATOR_HOST", "")
}
