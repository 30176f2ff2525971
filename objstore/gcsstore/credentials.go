package gcsstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/auth/credentials"
	"cloud.google.com/go/storage"

	"github.com/objbacker/objbacker/objstore"
)

// credentialsTimeout bounds the first token fetch at Open. Without a
// credentials file the search ends at the metadata server of a Google Cloud
// machine, which elsewhere may never answer; a start-up should fail, not
// hang.
const credentialsTimeout = 10 * time.Second

const credentialsHint = "set GOOGLE_APPLICATION_CREDENTIALS, run `gcloud auth application-default login`, " +
	"run on Google Cloud with a service account, or set STORAGE_EMULATOR_HOST for an emulator"

// findCredentials finds Application Default Credentials and fetches a token
// once, so that missing or refused credentials are a clear error at
// start-up rather than the first failing block request.
func findCredentials(ctx context.Context) (*auth.Credentials, error) {
	creds, err := credentials.DetectDefault(&credentials.DetectOptions{
		// Objects only; no IAM or bucket administration.
		Scopes: []string{storage.ScopeReadWrite},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: no Google credentials (%s): %w", objstore.ErrNoCredentials, credentialsHint, err)
	}
	ctx, cancel := context.WithTimeout(ctx, credentialsTimeout)
	defer cancel()
	if _, err := creds.Token(ctx); err != nil {
		err = classify(ctx, err, objstore.ErrAccessDenied)
		if errors.Is(err, objstore.ErrAccessDenied) {
			return nil, fmt.Errorf("Google credentials refused (%s): %w", credentialsHint, err)
		}
		return nil, fmt.Errorf("no usable Google credentials (%s): %w", credentialsHint, err)
	}
	return creds, nil
}
