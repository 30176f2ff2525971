package azblobstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"

	"github.com/objbacker/objbacker/objstore"
)

// The variables Azure's own tools read.
const (
	connectionStringEnv = "AZURE_STORAGE_CONNECTION_STRING"
	accountEnv          = "AZURE_STORAGE_ACCOUNT"
	keyEnv              = "AZURE_STORAGE_KEY"
)

// credentialsTimeout bounds the first token fetch at Open. The default
// chain ends at the managed-identity endpoint, which off Azure may never
// answer; a start-up should fail, not hang.
const credentialsTimeout = 10 * time.Second

const credentialsHint = "set " + connectionStringEnv + ", or " + keyEnv + " with the account, " +
	"or an identity azidentity finds: AZURE_CLIENT_ID with AZURE_TENANT_ID and a secret or certificate, " +
	"a managed identity, or `az login`"

// newServiceClient builds a client for the blob service with the first
// credentials found, in the order Azure's own tools look for them.
func newServiceClient(ctx context.Context, cfg Config, opts *service.ClientOptions) (*service.Client, error) {
	if cs := os.Getenv(connectionStringEnv); cs != "" {
		if cfg.Account != "" || cfg.Endpoint != "" {
			// Which one was meant cannot be guessed.
			return nil, fmt.Errorf("%w: %s names the account and endpoint already; drop account= and endpoint= or unset it",
				objstore.ErrInvalidURL, connectionStringEnv)
		}
		svc, err := service.NewClientFromConnectionString(cs, opts)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", connectionStringEnv, err)
		}
		return svc, nil
	}
	account := cmp.Or(cfg.Account, os.Getenv(accountEnv))
	endpoint, err := serviceURL(account, cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	if key := os.Getenv(keyEnv); key != "" {
		if account == "" {
			return nil, fmt.Errorf("%w: %s is set but no account is named: set account= or %s", objstore.ErrInvalidURL, keyEnv, accountEnv)
		}
		cred, err := service.NewSharedKeyCredential(account, key)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", keyEnv, err)
		}
		return service.NewClientWithSharedKeyCredential(endpoint, cred, opts)
	}
	cred, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		return nil, fmt.Errorf("%w: no Azure credentials (%s): %w", objstore.ErrNoCredentials, credentialsHint, err)
	}
	if err := checkToken(ctx, cred); err != nil {
		return nil, err
	}
	return service.NewClient(endpoint, cred, opts)
}

// serviceURL is the blob service URL: the endpoint as given, or the public
// cloud's for the account.
func serviceURL(account, endpoint string) (string, error) {
	if endpoint == "" {
		if account == "" {
			return "", fmt.Errorf("%w: no storage account: set account= or %s", objstore.ErrInvalidURL, accountEnv)
		}
		return "https://" + account + ".blob.core.windows.net/", nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%w: endpoint %q: want http[s]://host[:port][/account]", objstore.ErrInvalidURL, endpoint)
	}
	return endpoint, nil
}

// checkToken fetches a token once, so that missing or refused credentials
// are a clear error at start-up rather than the first failing block
// request.
func checkToken(ctx context.Context, cred *azidentity.DefaultAzureCredential) error {
	ctx, cancel := context.WithTimeout(ctx, credentialsTimeout)
	defer cancel()
	_, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://storage.azure.com/.default"}})
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[*azidentity.AuthenticationFailedError](err); ok {
		return fmt.Errorf("Azure credentials refused (%s): %w", credentialsHint, classify(ctx, err, objstore.ErrAccessDenied))
	}
	// The chain's last link is the managed identity: its failure is what
	// having no credentials off Azure looks like.
	return fmt.Errorf("%w: no usable Azure credentials (%s): %w", objstore.ErrNoCredentials, credentialsHint, err)
}
