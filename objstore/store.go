// Package objstore is the small, portable object-store interface the block
// core needs, with one driver per provider in its subpackages (memstore,
// filestore, s3store) and decorators that wrap any Store (Prefixed, Retrying,
// Counting, Latency). Every driver passes the conformance suite in
// objstore/storetest.
package objstore

import (
	"context"
	"io"
	"time"
)

// Store holds objects addressed by key. Implementations are safe for
// concurrent use. Keys are relative to the store's root (bucket or directory).
type Store interface {
	// Get returns the bytes of key starting at off; n < 0 reads to the end.
	// A range that starts at or beyond the end returns an empty body.
	// A missing object is ErrNotFound.
	Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, Attrs, error)

	// Put stores data under key, replacing any previous object atomically:
	// a concurrent Get sees the old or the new object, never a mix.
	// Like io.Writer's Write, it must not modify data, nor use it once it
	// returns: callers reuse the buffer at once (internal/payload).
	Put(ctx context.Context, key string, data []byte, opts PutOptions) (Attrs, error)

	// Delete removes key. Deleting a missing object is not an error.
	Delete(ctx context.Context, key string) error

	// DeleteIfMatch removes key only if it exists with this ETag: the
	// compare-and-delete that gives back a claim (the mount marker) without
	// removing one another process has set since. An object with another
	// ETag stays and the call fails with ErrPreconditionFailed; a missing
	// object fails with ErrNotFound, so that a retry after a lost answer
	// tells "gone" from "replaced". Drivers decide it atomically where the
	// store can; each says where it cannot.
	DeleteIfMatch(ctx context.Context, key, etag string) error

	// Stat returns the attributes of key, or ErrNotFound.
	Stat(ctx context.Context, key string) (Attrs, error)

	// List calls fn for every object whose key starts with prefix and is
	// strictly greater than startAfter ("" lists from the start), in
	// lexicographic (byte-wise) key order. An error from fn stops the
	// listing and is returned.
	//
	// startAfter need not be a key that exists, nor start with prefix: a
	// listing resumes after the last key it delivered, and key ranges are
	// listed apart by starting each after the one before ends. Drivers pass
	// it to the provider where its listing can start there, so that a
	// resumed listing does not read again the pages before that point.
	List(ctx context.Context, prefix, startAfter string, fn func(ObjectInfo) error) error

	// Close releases the store's resources.
	Close() error
}

// Attrs describes a stored object.
type Attrs struct {
	Size        int64
	ETag        string // opaque version token, without surrounding quotes
	ModTime     time.Time
	ContentType string
	// ContentEncoding is how the stored bytes are encoded (s3backer marks
	// compressed and encrypted blocks with it); stores never decode it.
	ContentEncoding string
	// Metadata holds user metadata with lower-case keys and no provider
	// prefix (S3's "x-amz-meta-" is stripped).
	Metadata map[string]string
}

// PutOptions qualify a Put.
type PutOptions struct {
	ContentType     string
	ContentEncoding string
	// Metadata keys are lower-case ASCII letters, digits and dashes.
	Metadata map[string]string
	// IfNoneMatch makes the Put fail with ErrPreconditionFailed when the
	// object already exists (create-if-absent).
	IfNoneMatch bool
	// IfMatch, when set, makes the Put fail with ErrPreconditionFailed unless
	// the object exists with this ETag (compare-and-swap).
	IfMatch string
}

// ObjectInfo is one entry of a listing.
type ObjectInfo struct {
	Key  string
	Size int64
	ETag string
}

// ListScansAll reports whether every listing of store reads all of its
// keys, whatever the prefix: then a listing split into ranges by prefix,
// as a device lists a bucket, reads the whole store once per range, and
// is better made in one. A store says so with a ListScansAll method
// (filestore, which reads a whole directory to find the names that
// match); the wrappers in this package pass their store's answer on.
func ListScansAll(store Store) bool {
	s, ok := store.(interface{ ListScansAll() bool })
	return ok && s.ListScansAll()
}
