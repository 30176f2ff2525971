package azblobstore

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/internal/httpnet"
)

// classify maps an SDK error onto objstore's error kinds and keeps the SDK's
// text (status, error code, request ID) for the logs. missing is what a 404
// without an error code means for the operation.
func classify(ctx context.Context, err error, missing error) error {
	if ctx.Err() != nil {
		// The caller gave up, and retrying is its decision. The context is
		// asked rather than the error: network timeouts also satisfy
		// errors.Is(err, context.DeadlineExceeded), and those are transient.
		return err
	}
	var status int
	if respErr, ok := errors.AsType[*azcore.ResponseError](err); ok {
		status = respErr.StatusCode
		if err == error(respErr) {
			err = terseError{respErr}
		}
	} else if authErr, ok := errors.AsType[*azidentity.AuthenticationFailedError](err); ok && authErr.RawResponse != nil {
		// The identity service refused the credentials, or failed.
		if status = authErr.RawResponse.StatusCode; !retryableStatus(status) {
			return kind(objstore.ErrAccessDenied, err)
		}
	}
	switch {
	case bloberror.HasCode(err, bloberror.ContainerNotFound):
		return kind(objstore.ErrBucketNotFound, err)
	case bloberror.HasCode(err, bloberror.BlobNotFound) || status == http.StatusNotFound:
		return kind(missing, err)
	// If-None-Match: * on an existing blob is answered 409 BlobAlreadyExists,
	// not 412.
	case status == http.StatusPreconditionFailed || bloberror.HasCode(err, bloberror.BlobAlreadyExists):
		return kind(objstore.ErrPreconditionFailed, err)
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return kind(objstore.ErrAccessDenied, err)
	// The bytes do not match the MD5 or CRC64 sent with them: damaged on
	// the way, and a retry sends them again from the caller's intact buffer.
	case bloberror.HasCode(err, bloberror.MD5Mismatch, bloberror.CRC64Mismatch), isAzuriteMD5Mismatch(err),
		status != 0 && retryableStatus(status),
		status == 0 && httpnet.IsTransient(err):
		return objstore.Transient(err)
	}
	return err
}

// isAzuriteMD5Mismatch recognises the emulator's answer to a Put Blob whose
// bytes do not match their MD5, which is not Azure's: 400 InvalidOperation,
// "Provided contentMD5 doesn't match." The code alone covers every kind of
// refusal; only the message, in the SDK's full text of the answer, tells
// this one.
func isAzuriteMD5Mismatch(err error) bool {
	respErr, ok := errors.AsType[*azcore.ResponseError](err)
	return ok && respErr.ErrorCode == string(bloberror.InvalidOperation) && strings.Contains(respErr.Error(), "contentMD5 doesn't match")
}

// retryableStatus: 408, 429 (ServerBusy is 503), and 5xx but 501, as
// Azure's retry policy judges them.
func retryableStatus(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests ||
		(status >= 500 && status != http.StatusNotImplemented)
}

func kind(sentinel, err error) error { return fmt.Errorf("%w: %w", sentinel, err) }

// isInvalidRange reports Azure's 416 answer to a range starting at or past
// the end of the blob.
func isInvalidRange(err error) bool {
	if bloberror.HasCode(err, bloberror.InvalidRange) {
		return true
	}
	respErr, ok := errors.AsType[*azcore.ResponseError](err)
	return ok && respErr.StatusCode == http.StatusRequestedRangeNotSatisfiable
}

// terseError replaces the SDK's text for an answer of the service, a dozen
// lines with the XML body, by the one line a log or a start-up error needs:
// the request, the status with Azure's message, the error code and the
// request ID.
type terseError struct{ *azcore.ResponseError }

func (e terseError) Error() string {
	resp := e.RawResponse
	if resp == nil || resp.Request == nil {
		return fmt.Sprintf("%d %s", e.StatusCode, e.ErrorCode)
	}
	u := *resp.Request.URL
	// The query may hold a SAS signature.
	u.RawQuery = ""
	return fmt.Sprintf("%s %s: %s (%s, request ID %s)", resp.Request.Method, u.String(), resp.Status, e.ErrorCode, resp.Header.Get("x-ms-request-id"))
}

func (e terseError) Unwrap() error { return e.ResponseError }
