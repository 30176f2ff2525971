package gcsstore

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/internal/httpnet"
)

// classify maps an SDK error onto objstore's error kinds and keeps the SDK's
// text for the logs. missing is what a bare 404 means for the operation: the
// SDK reports a missing bucket on an object request as a missing object.
func classify(ctx context.Context, err error, missing error) error {
	if ctx.Err() != nil {
		// The caller gave up, and retrying is its decision. The context is
		// asked rather than the error: network timeouts also satisfy
		// errors.Is(err, context.DeadlineExceeded), and those are transient.
		return err
	}
	if tokenErr, ok := errors.AsType[*auth.Error](err); ok {
		return classifyToken(tokenErr, err)
	}
	var status int
	var damaged bool
	if apiErr, ok := errors.AsType[*googleapi.Error](err); ok {
		status = apiErr.Code
		damaged = isDamaged(apiErr)
	}
	switch {
	case errors.Is(err, storage.ErrBucketNotExist):
		return kind(objstore.ErrBucketNotFound, err)
	case errors.Is(err, storage.ErrObjectNotExist) || status == http.StatusNotFound:
		return kind(missing, err)
	case status == http.StatusPreconditionFailed:
		return kind(objstore.ErrPreconditionFailed, err)
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return kind(objstore.ErrAccessDenied, err)
	case status != 0 && retryableStatus(status), damaged,
		status == 0 && (httpnet.IsTransient(err) || storage.ShouldRetry(err)):
		return objstore.Transient(err)
	}
	return err
}

// classifyToken judges a failure to get an access token: the token service
// refusing the credentials (a revoked key, a deleted service account) is a
// denial, not something to retry.
func classifyToken(tokenErr *auth.Error, err error) error {
	if tokenErr.Response == nil {
		if httpnet.IsTransient(err) {
			return objstore.Transient(err)
		}
		return err
	}
	if status := tokenErr.Response.StatusCode; retryableStatus(status) {
		return objstore.Transient(err)
	}
	return kind(objstore.ErrAccessDenied, err)
}

// retryableStatus follows Google's advice for Cloud Storage: 408, 429 and
// 5xx. 501 is left out: a request the server does not implement stays so.
func retryableStatus(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests ||
		(status >= 500 && status != http.StatusNotImplemented)
}

// isDamaged recognises GCS's answer to an upload whose bytes do not match
// the MD5 or CRC32C sent with them, a 400 saying `Provided CRC32C "…"
// doesn't match calculated CRC32C "…".` (or `Provided MD5 hash …`): the
// bytes were damaged on the way, and a retry sends them again from the
// caller's intact buffer. The reason, "invalid", is shared with every other
// bad request, so only the message tells.
func isDamaged(apiErr *googleapi.Error) bool {
	return apiErr.Code == http.StatusBadRequest && strings.Contains(apiErr.Message, "doesn't match calculated")
}

func kind(sentinel, err error) error { return fmt.Errorf("%w: %w", sentinel, err) }

// isInvalidRange reports GCS's 416 answer to a range starting at or past
// the end of the object.
func isInvalidRange(err error) bool {
	apiErr, ok := errors.AsType[*googleapi.Error](err)
	return ok && apiErr.Code == http.StatusRequestedRangeNotSatisfiable
}

// isChecksumMismatch recognises the SDK's failed CRC32C check of a read,
// which it reports with a plain error.
func isChecksumMismatch(err error) bool {
	return strings.Contains(err.Error(), "storage: bad CRC on read")
}
