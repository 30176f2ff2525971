package objstore

import (
	"context"
	"io"
	"strings"
)

// Prefixed serves the keys of store that start with prefix, with the prefix
// removed: "s3://bucket/vol" is the bucket's store seen through "vol/".
func Prefixed(store Store, prefix string) Store {
	if prefix == "" {
		return store
	}
	return &prefixed{next: store, prefix: prefix}
}

type prefixed struct {
	next   Store
	prefix string
}

func (p *prefixed) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, Attrs, error) {
	return p.next.Get(ctx, p.prefix+key, off, n)
}

func (p *prefixed) Put(ctx context.Context, key string, data []byte, opts PutOptions) (Attrs, error) {
	return p.next.Put(ctx, p.prefix+key, data, opts)
}

func (p *prefixed) Delete(ctx context.Context, key string) error {
	return p.next.Delete(ctx, p.prefix+key)
}

func (p *prefixed) DeleteIfMatch(ctx context.Context, key, etag string) error {
	return p.next.DeleteIfMatch(ctx, p.prefix+key, etag)
}

func (p *prefixed) Stat(ctx context.Context, key string) (Attrs, error) {
	return p.next.Stat(ctx, p.prefix+key)
}

// List starts after p.prefix+startAfter, the same point among the keys under
// p.prefix; "" stays "" so that a listing from the start stays one.
func (p *prefixed) List(ctx context.Context, prefix, startAfter string, fn func(ObjectInfo) error) error {
	if startAfter != "" {
		startAfter = p.prefix + startAfter
	}
	return p.next.List(ctx, p.prefix+prefix, startAfter, func(info ObjectInfo) error {
		info.Key = strings.TrimPrefix(info.Key, p.prefix)
		return fn(info)
	})
}

func (p *prefixed) Close() error { return p.next.Close() }

func (p *prefixed) ListScansAll() bool { return ListScansAll(p.next) }
