package storetest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/objbacker/objbacker/objstore"
)

// RandomBytes returns n random bytes: content no store can compress,
// deduplicate or mistake for another object's.
func RandomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// MustPut stores data under key and fails the test on error.
func MustPut(tb testing.TB, s objstore.Store, key string, data []byte, opts objstore.PutOptions) objstore.Attrs {
	tb.Helper()
	a, err := s.Put(tb.Context(), key, data, opts)
	if err != nil {
		tb.Fatalf("Put(%q, %d bytes): %v", key, len(data), err)
	}
	return a
}

// MustGet reads the range [off, off+n) of key (n < 0: to the end) and fails
// the test on error.
func MustGet(tb testing.TB, s objstore.Store, key string, off, n int64) ([]byte, objstore.Attrs) {
	tb.Helper()
	data, a, err := get(tb, s, key, off, n)
	if err != nil {
		tb.Fatalf("Get(%q, %d, %d): %v", key, off, n, err)
	}
	return data, a
}

// get reads a whole range and closes the body, so callers in goroutines can
// report errors without Fatal.
func get(tb testing.TB, s objstore.Store, key string, off, n int64) ([]byte, objstore.Attrs, error) {
	rc, a, err := s.Get(tb.Context(), key, off, n)
	if err != nil {
		return nil, a, err
	}
	data, err := io.ReadAll(rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	return data, a, err
}

// ListAll returns every entry under prefix, in the order the store gave them.
func ListAll(tb testing.TB, s objstore.Store, prefix string) []objstore.ObjectInfo {
	tb.Helper()
	return ListAfter(tb, s, prefix, "")
}

// ListAfter returns every entry under prefix after startAfter, in the order
// the store gave them.
func ListAfter(tb testing.TB, s objstore.Store, prefix, startAfter string) []objstore.ObjectInfo {
	tb.Helper()
	var infos []objstore.ObjectInfo
	err := s.List(tb.Context(), prefix, startAfter, func(info objstore.ObjectInfo) error {
		infos = append(infos, info)
		return nil
	})
	if err != nil {
		tb.Fatalf("List(%q, after %q): %v", prefix, startAfter, err)
	}
	return infos
}

// putAll stores objects with putWorkers concurrent puts, because a
// sequential fill of hundreds of objects dominates the suite's time on a
// network store.
func putAll(tb testing.TB, s objstore.Store, objects map[string][]byte) {
	tb.Helper()
	keys := make(chan string)
	var wg sync.WaitGroup
	for range putWorkers {
		wg.Go(func() {
			for key := range keys {
				if _, err := s.Put(tb.Context(), key, objects[key], objstore.PutOptions{}); err != nil {
					tb.Errorf("Put(%q): %v", key, err)
				}
			}
		})
	}
	for key := range objects {
		keys <- key
	}
	close(keys)
	wg.Wait()
	if tb.Failed() {
		tb.FailNow()
	}
}

// window is the part of data a range read of [off, off+n) must return.
func window(data []byte, off, n int64) []byte {
	if off >= int64(len(data)) {
		return []byte{}
	}
	data = data[off:]
	if n >= 0 && n < int64(len(data)) {
		data = data[:n]
	}
	return data
}

// differ describes how got differs from want without printing megabytes.
func differ(got, want []byte) string {
	if len(got) != len(want) {
		return fmt.Sprintf("got %d bytes, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			return fmt.Sprintf("%d bytes, first difference at offset %d", len(got), i)
		}
	}
	return "identical"
}

// BucketGone checks that requests on key in s, whose bucket was deleted,
// fail with ErrBucketNotFound and not ErrNotFound: a device reads a missing
// block object as zeros, counts its deletion as done, and takes an empty
// listing for a device of zeros.
func BucketGone(tb testing.TB, s objstore.Store, key string) {
	tb.Helper()
	ctx := context.Background()
	_, _, getErr := s.Get(ctx, key, 0, -1)
	_, statErr := s.Stat(ctx, key)
	deleteErr := s.Delete(ctx, key)
	listErr := s.List(ctx, "", "", func(objstore.ObjectInfo) error { return nil })
	listAfterErr := s.List(ctx, "", key, func(objstore.ObjectInfo) error { return nil })
	_, putErr := s.Put(ctx, key, []byte("block"), objstore.PutOptions{})
	for _, r := range []struct {
		op  string
		err error
	}{{"Get", getErr}, {"Stat", statErr}, {"Delete", deleteErr}, {"List", listErr}, {"List after a key", listAfterErr}, {"Put", putErr}} {
		if !errors.Is(r.err, objstore.ErrBucketNotFound) || errors.Is(r.err, objstore.ErrNotFound) {
			tb.Errorf("%s in a deleted bucket = %v; want ErrBucketNotFound, not ErrNotFound", r.op, r.err)
		}
	}
}
