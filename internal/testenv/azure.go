package testenv

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"
)

// AzureEndpointEnv names the variable through which the test command passes
// the service URL of its Azurite (http://127.0.0.1:PORT/ACCOUNT);
// AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY come with it.
const AzureEndpointEnv = "OBJBACKER_TEST_AZURE_ENDPOINT"

// AzureEndpoint returns the service URL of the test Azure emulator, or
// fails or skips the test (see Missing) when none is configured or it does
// not answer.
func AzureEndpoint(t testing.TB) string {
	t.Helper()
	return emulator(t, AzureEndpointEnv, "Azure emulator", func(endpoint string) string {
		// Refused with 403 without credentials, which still shows a server.
		return endpoint + "?comp=list"
	})
}

// NewAzureContainer creates a container with a fresh name on the test
// Azure emulator and removes it, with everything in it, when the test ends.
func NewAzureContainer(t testing.TB) string {
	t.Helper()
	name, _ := newAzureContainer(t)
	return name
}

// AzureURL returns "azblob://CONTAINER/PREFIX?account=ACCOUNT&endpoint=ENDPOINT"
// for a fresh container (see NewAzureContainer).
func AzureURL(t testing.TB, prefix string) string {
	t.Helper()
	name, endpoint := newAzureContainer(t)
	u := url.URL{
		Scheme:   "azblob",
		Host:     name,
		Path:     "/" + prefix,
		RawQuery: url.Values{"account": {os.Getenv("AZURE_STORAGE_ACCOUNT")}, "endpoint": {endpoint}}.Encode(),
	}
	return u.String()
}

func newAzureContainer(t testing.TB) (name, endpoint string) {
	t.Helper()
	endpoint = AzureEndpoint(t)
	client := AzureClient(t, endpoint)
	// Container names are bucket names without dots: bucketName fits.
	name = bucketName(t)
	if _, err := client.CreateContainer(t.Context(), name, nil); err != nil {
		t.Fatalf("creating container %s at %s: %v", name, endpoint, err)
	}
	t.Cleanup(func() {
		// t.Context() is already canceled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// Deleting a container deletes its blobs.
		if _, err := client.DeleteContainer(ctx, name, nil); err != nil {
			t.Errorf("removing container %s at %s: %v", name, endpoint, err)
		}
	})
	return name, endpoint
}

// AzureClient returns a client for the Azure emulator at endpoint, with
// the account key from the environment, whose connections are closed when
// the test ends.
func AzureClient(t testing.TB, endpoint string) *service.Client {
	t.Helper()
	cred, err := service.NewSharedKeyCredential(os.Getenv("AZURE_STORAGE_ACCOUNT"), os.Getenv("AZURE_STORAGE_KEY"))
	if err != nil {
		t.Fatalf("Azure account key from AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY: %v", err)
	}
	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	client, err := service.NewClientWithSharedKeyCredential(endpoint, cred, &service.ClientOptions{
		ClientOptions: azcore.ClientOptions{Transport: &http.Client{Transport: transport}},
	})
	if err != nil {
		t.Fatalf("Azure client for %s: %v", endpoint, err)
	}
	return client
}
