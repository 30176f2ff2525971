package objstore

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound: the object does not exist.
	ErrNotFound = errors.New("object not found")
	// ErrPreconditionFailed: an IfNoneMatch or IfMatch condition did not hold.
	ErrPreconditionFailed = errors.New("precondition failed")
	// ErrBucketNotFound: the bucket, container or directory does not exist.
	ErrBucketNotFound = errors.New("bucket not found")
	// ErrAccessDenied: the credentials were refused or lack a permission.
	ErrAccessDenied = errors.New("access denied")
	// ErrNoCredentials: no credentials were found where the provider's
	// tools look for them.
	ErrNoCredentials = errors.New("no credentials")
	// ErrInvalidURL: a store URL that cannot be opened as written.
	ErrInvalidURL = errors.New("invalid store URL")
	// ErrCorrupt: an object's bytes do not match the checksum the store
	// holds for them; a reader returns it at the end of the body.
	ErrCorrupt = errors.New("object data does not match its checksum")
)

// TransientError marks a failure that may succeed when retried
// (timeouts, throttling, 5xx, connection resets).
type TransientError struct{ Err error }

func (e *TransientError) Error() string { return fmt.Sprintf("transient: %v", e.Err) }
func (e *TransientError) Unwrap() error { return e.Err }

// Transient wraps err as retryable. Transient(nil) is nil.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &TransientError{Err: err}
}

// IsTransient reports whether err, or an error it wraps, is retryable.
func IsTransient(err error) bool {
	var t *TransientError
	return errors.As(err, &t)
}
