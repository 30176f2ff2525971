package rangeread

import (
	"errors"
	"fmt"
	"io"

	"github.com/objbacker/objbacker/objstore"
)

// Body classifies errors that cut a read short, so that a reset connection
// mid-object is as retryable as one that fails before the response, and
// damage in flight is worth a new read.
type Body struct {
	io.ReadCloser
	// Object names the object in errors, as "s3://bucket/key".
	Object string
	// IsChecksumMismatch recognises the SDK's own failed check of the bytes
	// read; nil for an SDK that checks none.
	IsChecksumMismatch func(error) bool
	// Classify maps any other error onto objstore's kinds, naming the
	// object as the driver's other errors do.
	Classify func(error) error
}

func (b *Body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == nil || err == io.EOF:
	case errors.Is(err, objstore.ErrCorrupt):
		// The driver's own verifier: its error already says what differed.
		err = objstore.Transient(fmt.Errorf("%s: %w", b.Object, err))
	case b.IsChecksumMismatch != nil && b.IsChecksumMismatch(err):
		// The SDK's error is no ErrCorrupt; its text is kept for the logs.
		err = objstore.Transient(fmt.Errorf("%s: %w: %v", b.Object, objstore.ErrCorrupt, err))
	default:
		err = b.Classify(err)
	}
	return n, err
}
