package rangeread

import (
	"context"
	"io"
	"net/http"

	"github.com/objbacker/objbacker/objstore"
)

// Empty answers a Get that covers no byte of the object: an empty range,
// which HTTP cannot express, or one starting at or past the end, which the
// services refuse with 416 where the interface promises an empty body. The
// attributes from stat still tell whether the object exists.
func Empty(ctx context.Context, stat func(context.Context, string) (objstore.Attrs, error), key string) (io.ReadCloser, objstore.Attrs, error) {
	attrs, err := stat(ctx, key)
	if err != nil {
		return nil, objstore.Attrs{}, err
	}
	return http.NoBody, attrs, nil
}
