package testenv

import (
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
)

func TestNewAzureContainerRemovesIt(t *testing.T) {
	client := AzureClient(t, AzureEndpoint(t))
	var name string
	t.Run("user", func(t *testing.T) {
		name = NewAzureContainer(t)
		blob := client.NewContainerClient(name).NewBlockBlobClient("left/behind")
		if _, err := blob.UploadBuffer(t.Context(), []byte("x"), nil); err != nil {
			t.Fatalf("writing a blob: %v", err)
		}
	})
	_, err := client.NewContainerClient(name).GetProperties(t.Context(), nil)
	if !bloberror.HasCode(err, bloberror.ContainerNotFound, bloberror.ContainerBeingDeleted) {
		t.Errorf("container %s after its test ended: %v; want it gone", name, err)
	}
}

func TestAzureURL(t *testing.T) {
	endpoint := AzureEndpoint(t)
	raw := AzureURL(t, "vol/a")
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("AzureURL = %q: %v", raw, err)
	}
	q := u.Query()
	if u.Scheme != "azblob" || u.Path != "/vol/a" || q.Get("endpoint") != endpoint || q.Get("account") != os.Getenv("AZURE_STORAGE_ACCOUNT") {
		t.Errorf("AzureURL = %q; want azblob://CONTAINER/vol/a?account=ACCOUNT&endpoint=%s", raw, endpoint)
	}
	if strings.Contains(u.Host, ".") {
		t.Errorf("container name %q: Azure allows no dots", u.Host)
	}
	if _, err := AzureClient(t, endpoint).NewContainerClient(u.Host).GetProperties(t.Context(), nil); err != nil {
		t.Errorf("container %s: %v; want it to exist", u.Host, err)
	}
}
