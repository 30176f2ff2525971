package blockmap

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/memstore"
)

func TestArenaCarvesSlabsIntoSeparateBlocks(t *testing.T) {
	const bs = 16 << 20 // 4 blocks per slab
	a := newArena(bs, 1<<30)
	defer a.release()
	var got [][]byte
	for i := range 6 {
		b := a.get()
		if len(b) != bs || cap(b) != bs {
			t.Fatalf("buffer %d: len %d cap %d, want both %d (an append must not reach the next block)", i, len(b), cap(b), bs)
		}
		b[0], b[bs-1] = byte(i), byte(i)
		got = append(got, b)
	}
	if len(a.slabs) != 2 {
		t.Fatalf("6 blocks of 4 per slab took %d slabs, want 2", len(a.slabs))
	}
	for i, b := range got {
		if b[0] != byte(i) || b[bs-1] != byte(i) {
			t.Fatalf("buffer %d was overwritten through another one", i)
		}
	}
	a.put(got[2])
	if b := a.get(); &b[0] != &got[2][0] {
		t.Fatal("a freed buffer was not reused first")
	}
	if len(a.slabs) != 2 {
		t.Fatalf("reuse mapped a new slab: %d slabs", len(a.slabs))
	}
}

// blockingStore holds every Get until release is closed, whatever its
// context says, like a request stuck in a driver.
type blockingStore struct {
	objstore.Store
	started chan struct{}
	release chan struct{}
}

func (s *blockingStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, objstore.Attrs, error) {
	if len(key) == 8 {
		s.started <- struct{}{}
		<-s.release
	}
	return s.Store.Get(context.Background(), key, off, n)
}

// Close releases the block buffers, so it must wait for a read that is
// still fetching into one.
func TestCloseWaitsForReadsInFlight(t *testing.T) {
	g := Geometry{Size: 8 * mib, BlockSize: mib}
	mem := memstore.New()
	want := bytes.Repeat([]byte{7}, mib)
	if _, err := mem.Put(t.Context(), "00000000", want, objstorePut(g)); err != nil {
		t.Fatal(err)
	}
	store := &blockingStore{Store: mem, started: make(chan struct{}, 1), release: make(chan struct{})}
	d, err := Open(t.Context(), Config{Store: store, Geometry: g, CacheSize: 4 * mib, Parallel: 2, ReadAhead: -1, WriteDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	readDone := make(chan error, 1)
	p := make([]byte, 4096)
	go func() {
		_, err := d.ReadAt(p, 0)
		readDone <- err
	}()
	<-store.started
	closeDone := make(chan error, 1)
	go func() { closeDone <- d.Close() }()
	select {
	case err := <-closeDone:
		t.Fatalf("Close returned (%v) while a read was fetching into a block buffer", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(store.release)
	if err := <-closeDone; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-readDone; err == nil && !bytes.Equal(p, want[:len(p)]) {
		t.Fatal("the read returned wrong bytes")
	}
}
