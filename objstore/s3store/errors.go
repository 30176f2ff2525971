package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"

	"github.com/objbacker/objbacker/objstore"
)

// accessCodes are S3 error codes for refused credentials. They come with
// status 403 from S3 itself; the codes also catch proxies that change it.
var accessCodes = map[string]bool{
	"AccessDenied":          true,
	"InvalidAccessKeyId":    true,
	"SignatureDoesNotMatch": true,
}

// damagedCodes are S3's answers to a body or checksum header that does not
// match what the client computed: the bytes were damaged on the way, and a
// retry sends them again from the caller's intact buffer. (InvalidDigest is
// a checksum header that does not even parse, damage to the header itself;
// XAmzContentChecksumMismatch is MinIO's name for a flexible checksum that
// does not match.)
var damagedCodes = map[string]bool{
	"BadDigest":                   true,
	"InvalidDigest":               true,
	"XAmzContentSHA256Mismatch":   true,
	"XAmzContentChecksumMismatch": true,
}

// sdkRetryables is the SDK's own judgement of which failures are worth
// retrying: connection refused or reset, timeouts, 500/502/503/504,
// throttling codes such as SlowDown. Its retry loop is off; the verdict is
// still the best available.
var sdkRetryables = retry.IsErrorRetryables(retry.DefaultRetryables)

// statusError is what the SDK returns for any HTTP answer.
type statusError interface {
	error
	HTTPStatusCode() int
}

// classify maps an SDK error onto objstore's error kinds and keeps the SDK's
// text (operation, status, code, request ID) for the logs. missing is what
// a bare 404 means for the operation: a HEAD answer has no body to say
// whether the key or the bucket is missing.
func classify(ctx context.Context, err error, missing error) error {
	if ctx.Err() != nil {
		// The caller gave up, and retrying is its decision. The context is
		// asked rather than the error: network timeouts also satisfy
		// errors.Is(err, context.DeadlineExceeded), and those are transient.
		return err
	}
	var code string
	if apiErr, ok := errors.AsType[smithy.APIError](err); ok {
		code = apiErr.ErrorCode()
	}
	var status int
	if resp, ok := errors.AsType[statusError](err); ok {
		status = resp.HTTPStatusCode()
	}
	switch {
	case code == "NoSuchBucket":
		return kind(objstore.ErrBucketNotFound, err)
	case code == "NoSuchKey" || status == http.StatusNotFound:
		return kind(missing, err)
	case code == "PreconditionFailed" || status == http.StatusPreconditionFailed:
		return kind(objstore.ErrPreconditionFailed, err)
	case accessCodes[code] || status == http.StatusForbidden:
		return kind(objstore.ErrAccessDenied, err)
	case isTransient(err, code, status):
		return objstore.Transient(err)
	}
	return err
}

func isTransient(err error, code string, status int) bool {
	switch {
	case code == "ConditionalRequestConflict":
		// S3's answer to a conditional write racing another: retrying gives
		// the definite 200 or 412.
		return true
	case damagedCodes[code]:
		return true
	case status >= 500 && status != http.StatusNotImplemented:
		return true
	case errors.Is(err, io.ErrUnexpectedEOF):
		// A response cut short: the connection died mid-body.
		return true
	}
	return sdkRetryables.IsErrorRetryable(err) == aws.TrueTernary
}

func kind(sentinel, err error) error { return fmt.Errorf("%w: %w", sentinel, err) }

// isInvalidRange reports S3's 416 answer to a range starting at or past the
// end of the object.
func isInvalidRange(err error) bool {
	if apiErr, ok := errors.AsType[smithy.APIError](err); ok && apiErr.ErrorCode() == "InvalidRange" {
		return true
	}
	resp, ok := errors.AsType[statusError](err)
	return ok && resp.HTTPStatusCode() == http.StatusRequestedRangeNotSatisfiable
}
