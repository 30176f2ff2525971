package blockmap

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/memstore"
)

// faultyStore wraps a store with a delay per request and switchable
// failures of block writes and deletes (8-character keys; the descriptor
// and the mount marker are unaffected), to exercise back-pressure and
// error paths.
type faultyStore struct {
	objstore.Store
	delay     time.Duration
	failPuts  atomic.Bool
	inflight  atomic.Int64
	maxFlight atomic.Int64
}

var errInjected = objstore.Transient(errors.New("injected failure"))

func (f *faultyStore) enter() func() {
	n := f.inflight.Add(1)
	for {
		m := f.maxFlight.Load()
		if n <= m || f.maxFlight.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(f.delay)
	return func() { f.inflight.Add(-1) }
}

func (f *faultyStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, objstore.Attrs, error) {
	defer f.enter()()
	return f.Store.Get(ctx, key, off, n)
}

func (f *faultyStore) Put(ctx context.Context, key string, data []byte, opts objstore.PutOptions) (objstore.Attrs, error) {
	defer f.enter()()
	if f.failPuts.Load() && len(key) == 8 {
		return objstore.Attrs{}, errInjected
	}
	return f.Store.Put(ctx, key, data, opts)
}

func (f *faultyStore) Delete(ctx context.Context, key string) error {
	defer f.enter()()
	if f.failPuts.Load() && len(key) == 8 {
		return errInjected
	}
	return f.Store.Delete(ctx, key)
}

// testDevice opens a device over store with small, test-friendly settings.
func testDevice(t *testing.T, store objstore.Store, g Geometry, cache int64) *Device {
	t.Helper()
	d, err := Open(t.Context(), Config{Store: store, Geometry: g, CacheSize: cache, Parallel: 4, WriteDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { d.Close() }) })
	return d
}

func countingMem() (objstore.Store, *objstore.Counts, *memstore.Store) {
	mem := memstore.New()
	c := new(objstore.Counts)
	return objstore.Counting(mem, c), c, mem
}

func objectBytes(t *testing.T, s objstore.Store, key string) []byte {
	t.Helper()
	rc, _, err := s.Get(context.Background(), key, 0, -1)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func exists(t *testing.T, s objstore.Store, key string) bool {
	t.Helper()
	_, err := s.Stat(context.Background(), key)
	if errors.Is(err, objstore.ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

func objstorePut(g Geometry) objstore.PutOptions {
	return objstore.PutOptions{ContentType: BlockContentType, Metadata: blockMetadata(g)}
}
