package gcsstore

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"strconv"
	"strings"

	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/internal/rangeread"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (s *Store) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, objstore.Attrs, error) {
	if n == 0 {
		// HTTP cannot express an empty range.
		return rangeread.Empty(ctx, s.Stat, key)
	}
	// ReadCompressed keeps GCS from decoding gzip-encoded objects on the
	// way out: a store returns the bytes as stored, whatever their encoding.
	// The SDK's length -1 means "to the end", as n < 0 does here.
	r, err := s.bucket.Object(key).ReadCompressed(true).NewRangeReader(ctx, off, max(n, -1))
	if isInvalidRange(err) {
		// GCS's 416: the range starts at or past the end.
		return rangeread.Empty(ctx, s.Stat, key)
	}
	if err != nil {
		return nil, objstore.Attrs{}, s.objectError(ctx, key, err)
	}
	attrs := objstore.Attrs{
		Size:            r.Attrs.Size,
		ETag:            etag(r.Attrs.Generation),
		ModTime:         r.Attrs.LastModified,
		ContentType:     r.Attrs.ContentType,
		ContentEncoding: r.Attrs.ContentEncoding,
		Metadata:        lowerKeys(r.Metadata()),
	}
	// The SDK checks every whole-object read against the CRC32C that GCS
	// keeps.
	return &rangeread.Body{
		ReadCloser:         r,
		Object:             "gs://" + s.name + "/" + key,
		IsChecksumMismatch: isChecksumMismatch,
		Classify:           func(err error) error { return s.keyError(ctx, key, err, objstore.ErrNotFound) },
	}, attrs, nil
}

func (s *Store) Put(ctx context.Context, key string, data []byte, opts objstore.PutOptions) (objstore.Attrs, error) {
	obj := s.bucket.Object(key)
	conds, err := conditions(opts)
	if err != nil {
		return objstore.Attrs{}, fmt.Errorf("gs://%s/%s: %w", s.name, key, err)
	}
	if conds != nil {
		obj = obj.If(*conds)
	}
	w := obj.NewWriter(ctx)
	// No chunking: the whole object goes in one request, streamed from
	// data. A chunk size above the object would cost the same single
	// request plus a buffer of that size per writer, only to let the SDK
	// retry, which the Retrying decorator does instead.
	w.ChunkSize = 0
	w.ContentType = opts.ContentType
	w.ContentEncoding = opts.ContentEncoding
	// Without a type the SDK would sniff one from the data.
	w.ForceEmptyContentType = opts.ContentType == ""
	w.Metadata = maps.Clone(opts.Metadata)
	// The server checks the whole object against this checksum and stores
	// nothing if they differ; it also spares the SDK computing its own.
	w.CRC32C = crc32.Checksum(data, castagnoli)
	w.SendCRC32C = true
	_, err = w.Write(data)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return objstore.Attrs{}, s.keyError(ctx, key, err, objstore.ErrBucketNotFound)
	}
	written := w.Attrs()
	return objstore.Attrs{
		Size:            int64(len(data)),
		ETag:            etag(written.Generation),
		ModTime:         written.Updated,
		ContentType:     opts.ContentType,
		ContentEncoding: opts.ContentEncoding,
		Metadata:        maps.Clone(opts.Metadata),
	}, nil
}

func (s *Store) Delete(ctx context.Context, key string) error {
	err := s.bucket.Object(key).Delete(ctx)
	if err == nil {
		return nil
	}
	err = s.objectError(ctx, key, err)
	if errors.Is(err, objstore.ErrNotFound) {
		return nil
	}
	return err
}

// DeleteIfMatch deletes with ifGenerationMatch (the ETag is the
// generation), which GCS evaluates atomically with the delete. It reads the
// generation first all the same: fake-gcs-server ignores the condition on
// a delete, and so would any other store that does not implement it.
func (s *Store) DeleteIfMatch(ctx context.Context, key, etag string) error {
	gen, err := strconv.ParseInt(etag, 10, 64)
	if err != nil || gen <= 0 {
		return fmt.Errorf("gs://%s/%s: %w: ETag %q is no generation", s.name, key, objstore.ErrPreconditionFailed, etag)
	}
	a, err := s.Stat(ctx, key)
	if err != nil {
		return err
	}
	if a.ETag != etag {
		return fmt.Errorf("gs://%s/%s: %w: generation %s, not %s", s.name, key, objstore.ErrPreconditionFailed, a.ETag, etag)
	}
	if err := s.bucket.Object(key).If(storage.Conditions{GenerationMatch: gen}).Delete(ctx); err != nil {
		return s.objectError(ctx, key, err)
	}
	return nil
}

func (s *Store) Stat(ctx context.Context, key string) (objstore.Attrs, error) {
	a, err := s.bucket.Object(key).Attrs(ctx)
	if err != nil {
		return objstore.Attrs{}, s.objectError(ctx, key, err)
	}
	return objstore.Attrs{
		Size:            a.Size,
		ETag:            etag(a.Generation),
		ModTime:         a.Updated,
		ContentType:     a.ContentType,
		ContentEncoding: a.ContentEncoding,
		Metadata:        lowerKeys(a.Metadata),
	}, nil
}

// List starts the listing at startAfter with Query.StartOffset, which is
// inclusive: an object named startAfter itself is skipped here.
func (s *Store) List(ctx context.Context, prefix, startAfter string, fn func(objstore.ObjectInfo) error) error {
	q := &storage.Query{Prefix: prefix, StartOffset: startAfter}
	// Only what ObjectInfo carries: a listing page is a tenth the size.
	if err := q.SetAttrSelection([]string{"Name", "Size", "Generation"}); err != nil {
		return fmt.Errorf("gs://%s/%s*: %w", s.name, prefix, err)
	}
	it := s.bucket.Objects(ctx, q)
	for {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return nil
		}
		if err != nil {
			return s.keyError(ctx, prefix+"*", err, objstore.ErrBucketNotFound)
		}
		if startAfter != "" && a.Name <= startAfter {
			continue
		}
		if err := fn(objstore.ObjectInfo{Key: a.Name, Size: a.Size, ETag: etag(a.Generation)}); err != nil {
			return err
		}
	}
}

// conditions turns the interface's preconditions into GCS's, which compare
// generations: IfMatch carries a generation as Put and Get return it.
func conditions(opts objstore.PutOptions) (*storage.Conditions, error) {
	if opts.IfMatch == "" {
		if opts.IfNoneMatch {
			return &storage.Conditions{DoesNotExist: true}, nil
		}
		return nil, nil
	}
	gen, err := strconv.ParseInt(opts.IfMatch, 10, 64)
	if err != nil || gen <= 0 || opts.IfNoneMatch {
		// No object has that generation, or the object would have to exist
		// and not exist at once: the condition cannot hold.
		return nil, fmt.Errorf("%w: IfMatch %q (IfNoneMatch %v) can match no generation", objstore.ErrPreconditionFailed, opts.IfMatch, opts.IfNoneMatch)
	}
	return &storage.Conditions{GenerationMatch: gen}, nil
}

func etag(generation int64) string { return strconv.FormatInt(generation, 10) }

// lowerKeys undoes the HTTP canonicalisation of metadata names in the XML
// API's answers ("x-goog-meta-s3backer-blocksize" reads back as
// "S3backer-Blocksize"); the interface promises lower-case keys.
func lowerKeys(meta map[string]string) map[string]string {
	if len(meta) == 0 {
		return nil
	}
	out := make(map[string]string, len(meta))
	for k, v := range meta {
		out[strings.ToLower(k)] = v
	}
	return out
}

// keyError classifies err and names the object it concerns.
func (s *Store) keyError(ctx context.Context, key string, err, missing error) error {
	return fmt.Errorf("gs://%s/%s: %w", s.name, key, classify(ctx, err, missing))
}

// objectError is keyError for a request on one object, where the SDK reports
// a bucket that is gone as a missing object. A device reads a missing block
// object as zeros and counts a deleted one as done, so before saying "not
// found" it asks whether the bucket is still there, as Open does (probe): a
// deleted bucket must fail reads and deletes, not turn them into zeros and
// successes.
func (s *Store) objectError(ctx context.Context, key string, err error) error {
	err = s.keyError(ctx, key, err, objstore.ErrNotFound)
	if !errors.Is(err, objstore.ErrNotFound) {
		return err
	}
	if perr := s.probe(ctx); errors.Is(perr, objstore.ErrBucketNotFound) {
		return fmt.Errorf("gs://%s/%s: %w", s.name, key, perr)
	}
	return err
}
