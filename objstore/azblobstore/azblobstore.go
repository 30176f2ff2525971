// Package azblobstore is the objstore driver for Azure Blob Storage, built
// on the Azure SDK for Go (azblob). A container plays the part of a bucket,
// and every object is a block blob written with one Put Blob request.
//
// The SDK's own retries are off: an objstore.Retrying decorator above the
// store retries, and this package only classifies errors for it.
//
// ETags are Azure's, without quotes; IfMatch takes them back as they are.
// Metadata names go through the mapping in metadata.go, because Azure
// accepts only C# identifiers.
package azblobstore

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/internal/httpnet"
)

// Config names a container and how to reach it.
type Config struct {
	Container string
	// Account is the storage account; empty means AZURE_STORAGE_ACCOUNT.
	Account string
	// Endpoint is the URL of the blob service, such as
	// "http://127.0.0.1:10000/devstoreaccount1" for Azurite or
	// "https://ACCOUNT.blob.core.chinacloudapi.cn" in a sovereign cloud.
	// Empty means "https://ACCOUNT.blob.core.windows.net".
	Endpoint string
	// Parallel is how many requests the caller keeps in flight.
	Parallel int
}

// Store is an objstore.Store on one Azure Blob Storage container.
type Store struct {
	container *container.Client
	name      string
	transport *http.Transport
}

var _ objstore.Store = (*Store)(nil)

// Open connects to cfg.Container with the first credentials it finds:
// AZURE_STORAGE_CONNECTION_STRING, an account key in AZURE_STORAGE_KEY, or
// azidentity's default chain (environment, workload and managed identity,
// Azure CLI). It checks that the container is reachable. Errors wrap
// objstore.ErrBucketNotFound, ErrAccessDenied or a transient network
// error, and name the container and the service URL.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Container == "" {
		return nil, fmt.Errorf("azblobstore: %w: no container", objstore.ErrInvalidURL)
	}
	transport := httpnet.NewTransport(cfg.Parallel)
	opts := &service.ClientOptions{ClientOptions: azcore.ClientOptions{
		Transport: &http.Client{Transport: transport},
		Retry:     policy.RetryOptions{MaxRetries: -1},
	}}
	svc, err := newServiceClient(ctx, cfg, opts)
	if err != nil {
		transport.CloseIdleConnections()
		return nil, fmt.Errorf("azblobstore: container %q: %w", cfg.Container, err)
	}
	where := fmt.Sprintf("container %q at %s", cfg.Container, redactedURL(svc.URL()))
	s := &Store{container: svc.NewContainerClient(cfg.Container), name: cfg.Container, transport: transport}
	if _, err := s.container.GetProperties(ctx, nil); err != nil {
		s.Close()
		return nil, fmt.Errorf("azblobstore: %s: %w", where, classify(ctx, err, objstore.ErrBucketNotFound))
	}
	return s, nil
}

// Close drops idle connections; requests still running finish normally.
func (s *Store) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}

// redactedURL drops a SAS token that a connection string may have put in
// the service URL before it reaches an error message.
func redactedURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable service URL)"
	}
	u.RawQuery = ""
	return u.String()
}
