package testenv

import (
	"context"
	"net/http"
	"os"
	"testing"
	"time"
)

// emulator returns the endpoint the test command passes in the variable
// env, or fails or skips the test (see Missing) when none is configured or
// nothing answers at probe, a URL made from the endpoint.
func emulator(t testing.TB, env, what string, probe func(endpoint string) string) string {
	t.Helper()
	endpoint := os.Getenv(env)
	if endpoint == "" {
		Missing(t, "%s: %s is not set", what, env)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, probe(endpoint), nil)
	if err != nil {
		t.Fatalf("%s=%q: %v", env, endpoint, err)
	}
	// Any HTTP answer, even 403, shows a server; the probe keeps no
	// connection behind.
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		Missing(t, "%s %s=%s does not answer: %v", what, env, endpoint, err)
	}
	resp.Body.Close()
	return endpoint
}
