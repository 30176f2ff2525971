package azblobstore

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/internal/payload"
	"github.com/objbacker/objbacker/objstore/internal/rangeread"
)

func (s *Store) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, objstore.Attrs, error) {
	if n == 0 {
		// HTTP cannot express an empty range.
		return rangeread.Empty(ctx, s.Stat, key)
	}
	// Count 0 means "to the end", as n < 0 does here.
	resp, err := s.container.NewBlobClient(key).DownloadStream(ctx, &blob.DownloadStreamOptions{
		Range: blob.HTTPRange{Offset: off, Count: max(n, 0)},
	})
	if isInvalidRange(err) {
		// Azure's 416: the range starts at or past the end.
		return rangeread.Empty(ctx, s.Stat, key)
	}
	if err != nil {
		return nil, objstore.Attrs{}, s.keyError(ctx, key, err, objstore.ErrNotFound)
	}
	attrs := objstore.Attrs{
		Size:            deref(resp.ContentLength),
		ETag:            unquote(resp.ETag),
		ModTime:         deref(resp.LastModified),
		ContentType:     deref(resp.ContentType),
		ContentEncoding: deref(resp.ContentEncoding),
		Metadata:        fromAzure(resp.Metadata),
	}
	if total, ok := rangeread.ContentRangeSize(deref(resp.ContentRange)); ok {
		attrs.Size = total
	}
	rc := resp.Body
	if off == 0 && n < 0 {
		rc = rangeread.VerifyMD5(rc, resp.ContentMD5, attrs.Size, "Content-MD5")
	}
	// The SDK checks no bytes itself: only the MD5 verifier above does.
	return &rangeread.Body{
		ReadCloser: rc,
		Object:     "azblob://" + s.name + "/" + key,
		Classify:   func(err error) error { return s.keyError(ctx, key, err, objstore.ErrNotFound) },
	}, attrs, nil
}

func (s *Store) Put(ctx context.Context, key string, data []byte, opts objstore.PutOptions) (objstore.Attrs, error) {
	meta, err := toAzure(opts.Metadata)
	if err != nil {
		return objstore.Attrs{}, fmt.Errorf("azblob://%s/%s: %w", s.name, key, err)
	}
	headers := &blob.HTTPHeaders{}
	if opts.ContentType != "" {
		headers.BlobContentType = &opts.ContentType
	}
	if opts.ContentEncoding != "" {
		headers.BlobContentEncoding = &opts.ContentEncoding
	}
	sum := md5.Sum(data)
	// One Put Blob request holds the whole block: no blocks staged and
	// committed, so a block is one request and replaces the old one
	// atomically. Azure checks the MD5 on receipt, refuses the write if the
	// bytes were damaged on the way, and keeps it for the reads.
	body := payload.NewReader(data)
	defer body.Detach()
	resp, err := s.container.NewBlockBlobClient(key).Upload(ctx, streaming.NopCloser(body), &blockblob.UploadOptions{
		HTTPHeaders:             headers,
		Metadata:                meta,
		AccessConditions:        conditions(opts),
		TransactionalValidation: blob.TransferValidationTypeMD5(sum[:]),
	})
	if err != nil {
		return objstore.Attrs{}, s.keyError(ctx, key, err, objstore.ErrNotFound)
	}
	return objstore.Attrs{
		Size:            int64(len(data)),
		ETag:            unquote(resp.ETag),
		ModTime:         deref(resp.LastModified),
		ContentType:     opts.ContentType,
		ContentEncoding: opts.ContentEncoding,
		Metadata:        maps.Clone(opts.Metadata),
	}, nil
}

func (s *Store) Delete(ctx context.Context, key string) error {
	_, err := s.container.NewBlobClient(key).Delete(ctx, nil)
	if err == nil {
		return nil
	}
	err = s.keyError(ctx, key, err, objstore.ErrNotFound)
	if errors.Is(err, objstore.ErrNotFound) {
		return nil
	}
	return err
}

// DeleteIfMatch deletes with If-Match, which Azure evaluates atomically
// with the delete. Azurite answers 412 for a missing blob as for another
// ETag; a Stat after a 412 tells the two apart.
func (s *Store) DeleteIfMatch(ctx context.Context, key, etag string) error {
	_, err := s.container.NewBlobClient(key).Delete(ctx, &blob.DeleteOptions{
		AccessConditions: conditions(objstore.PutOptions{IfMatch: etag}),
	})
	if err == nil {
		return nil
	}
	err = s.keyError(ctx, key, err, objstore.ErrNotFound)
	if errors.Is(err, objstore.ErrPreconditionFailed) {
		if _, serr := s.Stat(ctx, key); errors.Is(serr, objstore.ErrNotFound) {
			return serr
		}
	}
	return err
}

func (s *Store) Stat(ctx context.Context, key string) (objstore.Attrs, error) {
	resp, err := s.container.NewBlobClient(key).GetProperties(ctx, nil)
	if err != nil {
		return objstore.Attrs{}, s.keyError(ctx, key, err, objstore.ErrNotFound)
	}
	return objstore.Attrs{
		Size:            deref(resp.ContentLength),
		ETag:            unquote(resp.ETag),
		ModTime:         deref(resp.LastModified),
		ContentType:     deref(resp.ContentType),
		ContentEncoding: deref(resp.ContentEncoding),
		Metadata:        fromAzure(resp.Metadata),
	}, nil
}

// List passes startAfter to List Blobs as startFrom, the parameter service
// version 2026-02-06 added, which starts the listing at a blob name,
// inclusive; the blob named startAfter itself is skipped here. Servers that
// do not know startFrom ignore it (Azurite 3.35 does, though it accepts the
// version): then the listing starts at the prefix's first blob and every
// blob up to startAfter is skipped here, page by page, which is correct but
// reads those pages again.
func (s *Store) List(ctx context.Context, prefix, startAfter string, fn func(objstore.ObjectInfo) error) error {
	opts := &container.ListBlobsFlatOptions{Prefix: &prefix}
	if startAfter != "" {
		opts.StartFrom = &startAfter
	}
	pager := s.container.NewListBlobsFlatPager(opts)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return s.keyError(ctx, prefix+"*", err, objstore.ErrBucketNotFound)
		}
		for _, item := range page.Segment.BlobItems {
			info := objstore.ObjectInfo{Key: deref(item.Name)}
			if startAfter != "" && info.Key <= startAfter {
				continue
			}
			if p := item.Properties; p != nil {
				info.Size, info.ETag = deref(p.ContentLength), unquote(p.ETag)
			}
			if err := fn(info); err != nil {
				return err
			}
		}
	}
	return nil
}

// conditions turns the interface's preconditions into Azure's, which
// compare quoted ETags.
func conditions(opts objstore.PutOptions) *blob.AccessConditions {
	var mod blob.ModifiedAccessConditions
	if opts.IfNoneMatch {
		mod.IfNoneMatch = new(azcore.ETagAny)
	}
	if opts.IfMatch != "" {
		mod.IfMatch = new(azcore.ETag(`"` + opts.IfMatch + `"`))
	}
	return &blob.AccessConditions{ModifiedAccessConditions: &mod}
}

// keyError classifies err and names the object it concerns.
func (s *Store) keyError(ctx context.Context, key string, err, missing error) error {
	return fmt.Errorf("azblob://%s/%s: %w", s.name, key, classify(ctx, err, missing))
}

func unquote(etag *azcore.ETag) string {
	if etag == nil {
		return ""
	}
	return strings.Trim(string(*etag), `"`)
}

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
