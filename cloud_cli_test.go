package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/objbacker/objbacker/internal/testenv"
)

// TestCloudStartupErrors: on gs:// and azblob:// as on s3://, a missing
// bucket or refused credentials is bad input (exit code 2) and an
// unreachable endpoint a runtime failure (exit code 1), reported at
// start-up in one line that names the export and the cause.
func TestCloudStartupErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		// url returns the export's URL, after setting up the environment.
		url  func(t *testing.T) string
		code int
		want []string
	}{
		{"gs missing bucket", func(t *testing.T) string {
			return "gs://no-such-bucket-objbacker/vol?endpoint=" + testenv.GCSEndpoint(t)
		}, 2, []string{"no-such-bucket-objbacker", "bucket not found"}},
		{"gs refused credentials", func(t *testing.T) string {
			testenv.RefusedGCSCredentials(t)
			return "gs://bucket-objbacker/vol"
		}, 2, []string{"bucket-objbacker", "access denied", "invalid_grant"}},
		{"s3 missing credentials", func(t *testing.T) string {
			url := "s3://bucket-objbacker/vol?endpoint=" + testenv.S3Endpoint(t)
			home := t.TempDir()
			for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "", "AWS_PROFILE": "",
				"AWS_EC2_METADATA_DISABLED": "true", "HOME": home, "AWS_CONFIG_FILE": home + "/config", "AWS_SHARED_CREDENTIALS_FILE": home + "/credentials"} {
				t.Setenv(k, v)
			}
			return url
		}, 2, []string{"bucket-objbacker", "no credentials", "AWS_ACCESS_KEY_ID"}},
		{"gs missing credentials", func(t *testing.T) string {
			home := t.TempDir()
			for k, v := range map[string]string{"STORAGE_EMULATOR_HOST": "", "GOOGLE_APPLICATION_CREDENTIALS": "", "HOME": home, "CLOUDSDK_CONFIG": home} {
				t.Setenv(k, v)
			}
			return "gs://bucket-objbacker/vol"
		}, 2, []string{"bucket-objbacker", "no credentials", "GOOGLE_APPLICATION_CREDENTIALS"}},
		{"gs unreachable", func(t *testing.T) string {
			return "gs://bucket-objbacker/vol?endpoint=" + closedEndpoint(t)
		}, 1, []string{"bucket-objbacker", "giving up after 10 attempts", "connection refused"}},
		{"azblob missing container", func(t *testing.T) string {
			return "azblob://no-such-container-objbacker/vol?endpoint=" + testenv.AzureEndpoint(t)
		}, 2, []string{"no-such-container-objbacker", "bucket not found", "ContainerNotFound"}},
		{"azblob wrong key", func(t *testing.T) string {
			url := testenv.AzureURL(t, "vol")
			// A valid key (base64 of 64 bytes), but not the account's.
			t.Setenv("AZURE_STORAGE_KEY", strings.Repeat("A", 86)+"==")
			return url
		}, 2, []string{"objb-", "access denied", "AuthorizationFailure"}},
		{"azblob unreachable", func(t *testing.T) string {
			testenv.AzureEndpoint(t) // for the account key that comes with it
			return "azblob://container-objbacker/vol?endpoint=" + closedEndpoint(t) + "/devstoreaccount1"
		}, 1, []string{"container-objbacker", "giving up after 10 attempts", "connection refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.url(t)
			start := time.Now()
			code, _, stderr := runCLI(t, "serve", "--size", "1G", "--export", "d="+url, "--listen", freeAddr(t))
			// Bad input fails at once; an unreachable store is retried as
			// any store trouble is (storeRetryPolicy: about 30 s at most).
			limit := 10 * time.Second
			if tc.code == 1 {
				limit = time.Minute
			}
			if elapsed := time.Since(start); elapsed > limit {
				t.Errorf("serve took %v to fail; want %v at most", elapsed, limit)
			}
			if code != tc.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			last := lines[len(lines)-1]
			for _, want := range append([]string{"objbacker: export d (" + url[:strings.Index(url, "://")]}, tc.want...) {
				if !strings.Contains(last, want) {
					t.Errorf("last stderr line %q does not say %q", last, want)
				}
			}
			t.Logf("exit %d: %s", code, last)
		})
	}
}

// closedEndpoint returns an http:// address where nothing listens:
// connections are refused.
func closedEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + l.Addr().String()
}
