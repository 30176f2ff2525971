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
