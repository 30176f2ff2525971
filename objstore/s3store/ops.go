package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/internal/payload"
	"github.com/objbacker/objbacker/objstore/internal/rangeread"
)

func (s *Store) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, objstore.Attrs, error) {
	if n == 0 {
		// HTTP cannot express an empty range.
		return rangeread.Empty(ctx, s.Stat, key)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: &s.bucket,
		Key:    &key,
		Range:  byteRange(off, n),
	})
	if isInvalidRange(err) {
		// S3's 416: the range starts at or past the end.
		return rangeread.Empty(ctx, s.Stat, key)
	}
	if err != nil {
		return nil, objstore.Attrs{}, s.keyError(ctx, key, err, objstore.ErrNotFound)
	}
	attrs := objstore.Attrs{
		Size:            aws.ToInt64(out.ContentLength),
		ETag:            unquote(out.ETag),
		ModTime:         aws.ToTime(out.LastModified),
		ContentType:     aws.ToString(out.ContentType),
		ContentEncoding: aws.ToString(out.ContentEncoding),
		Metadata:        out.Metadata,
	}
	if total, ok := rangeread.ContentRangeSize(aws.ToString(out.ContentRange)); ok {
		attrs.Size = total
	}
	var rc io.ReadCloser = out.Body
	if off == 0 && n < 0 && !hasChecksum(out) && etagIsMD5(out) {
		// The SDK validates objects stored with a checksum, which is what
		// we write. Objects without one (s3backer's: it sends Content-MD5)
		// are checked against a single-part ETag, the MD5 of the bytes,
		// unless their encryption makes the ETag something else.
		rc = rangeread.VerifyMD5(rc, etagMD5(attrs.ETag), attrs.Size, "ETag")
	}
	return &rangeread.Body{
		ReadCloser:         rc,
		Object:             "s3://" + s.bucket + "/" + key,
		IsChecksumMismatch: isChecksumMismatch,
		Classify:           func(err error) error { return s.keyError(ctx, key, err, objstore.ErrNotFound) },
	}, attrs, nil
}

func (s *Store) Put(ctx context.Context, key string, data []byte, opts objstore.PutOptions) (objstore.Attrs, error) {
	body := payload.NewReader(data)
	defer body.Detach()
	in := &s3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           &key,
		Body:          body,
		ContentLength: aws.Int64(int64(len(data))),
		Metadata:      opts.Metadata,
	}
	if opts.ContentType != "" {
		in.ContentType = &opts.ContentType
	}
	if opts.ContentEncoding != "" {
		in.ContentEncoding = &opts.ContentEncoding
	}
	if opts.IfNoneMatch {
		in.IfNoneMatch = aws.String("*")
	}
	if opts.IfMatch != "" {
		in.IfMatch = aws.String(`"` + opts.IfMatch + `"`)
	}
	out, err := s.client.PutObject(ctx, in)
	if err != nil {
		return objstore.Attrs{}, s.keyError(ctx, key, err, objstore.ErrNotFound)
	}
	// PutObject returns no Last-Modified; the response's Date is the server
	// clock that Stat's ModTime will also come from.
	modTime, _ := awsmiddleware.GetServerTime(out.ResultMetadata)
	return objstore.Attrs{
		Size:            int64(len(data)),
		ETag:            unquote(out.ETag),
		ModTime:         modTime,
		ContentType:     opts.ContentType,
		ContentEncoding: opts.ContentEncoding,
		Metadata:        maps.Clone(opts.Metadata),
	}, nil
}

func (s *Store) Delete(ctx context.Context, key string) error {
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return s.keyError(ctx, key, err, objstore.ErrNotFound)
	}
	return nil
}

// DeleteIfMatch reads the ETag first, then deletes with If-Match. AWS
// evaluates If-Match atomically with the delete (since 2025), but other
// S3-compatible stores ignore it on DELETE: MinIO deletes whatever the
// header says and answers 204 for a missing key (measured with the MinIO
// the tests run). The HEAD makes those right too except for a write that
// lands between the two requests.
func (s *Store) DeleteIfMatch(ctx context.Context, key, etag string) error {
	a, err := s.Stat(ctx, key)
	if err != nil {
		return err
	}
	if a.ETag != etag {
		return fmt.Errorf("s3://%s/%s: %w: ETag %s, not %s", s.bucket, key, objstore.ErrPreconditionFailed, a.ETag, etag)
	}
	_, err = s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key, IfMatch: aws.String(`"` + etag + `"`)})
	if err != nil {
		return s.keyError(ctx, key, err, objstore.ErrNotFound)
	}
	return nil
}

func (s *Store) Stat(ctx context.Context, key string) (objstore.Attrs, error) {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		err = s.keyError(ctx, key, err, objstore.ErrNotFound)
		// A HEAD answer has no body, so no NoSuchBucket code: a 404 is
		// all it says, for a missing object and a deleted bucket alike.
		if errors.Is(err, objstore.ErrNotFound) {
			if perr := s.probe(ctx); errors.Is(perr, objstore.ErrBucketNotFound) {
				return objstore.Attrs{}, fmt.Errorf("s3://%s/%s: %w", s.bucket, key, perr)
			}
		}
		return objstore.Attrs{}, err
	}
	return objstore.Attrs{
		Size:            aws.ToInt64(out.ContentLength),
		ETag:            unquote(out.ETag),
		ModTime:         aws.ToTime(out.LastModified),
		ContentType:     aws.ToString(out.ContentType),
		ContentEncoding: aws.ToString(out.ContentEncoding),
		Metadata:        out.Metadata,
	}, nil
}

// List asks ListObjectsV2 to start after startAfter (its StartAfter
// parameter, exclusive, as the interface's), so a resumed listing reads no
// page again. StartAfter applies to the first request only: further pages
// go on from the continuation token. Keys up to startAfter are skipped here
// too, for a server that ignores the parameter.
func (s *Store) List(ctx context.Context, prefix, startAfter string, fn func(objstore.ObjectInfo) error) error {
	in := &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix}
	if startAfter != "" {
		in.StartAfter = &startAfter
	}
	pages := s3.NewListObjectsV2Paginator(s.client, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return s.keyError(ctx, prefix+"*", err, objstore.ErrBucketNotFound)
		}
		for _, obj := range page.Contents {
			info := objstore.ObjectInfo{Key: aws.ToString(obj.Key), Size: aws.ToInt64(obj.Size), ETag: unquote(obj.ETag)}
			if startAfter != "" && info.Key <= startAfter {
				continue
			}
			if err := fn(info); err != nil {
				return err
			}
		}
	}
	return nil
}

// keyError classifies err and names the object it concerns.
func (s *Store) keyError(ctx context.Context, key string, err, missing error) error {
	return fmt.Errorf("s3://%s/%s: %w", s.bucket, key, classify(ctx, err, missing))
}

// byteRange is the HTTP Range for n bytes at off (n < 0: to the end), or
// nil for the whole object, which lets the SDK validate its checksum.
func byteRange(off, n int64) *string {
	switch {
	case off == 0 && n < 0:
		return nil
	case n < 0:
		return aws.String(fmt.Sprintf("bytes=%d-", off))
	default:
		return aws.String(fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	}
}

func unquote(etag *string) string { return strings.Trim(aws.ToString(etag), `"`) }
