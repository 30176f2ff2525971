package blockmap

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
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

// heldPut holds the first PUT of one key until the test lets it go,
// announcing it on at; every other request passes.
type heldPut struct {
	objstore.Store
	key         string
	at, proceed chan struct{}
	once        sync.Once
}

func (s *heldPut) Put(ctx context.Context, key string, data []byte, opts objstore.PutOptions) (objstore.Attrs, error) {
	if key == s.key {
		s.once.Do(func() {
			s.at <- struct{}{}
			<-s.proceed
		})
	}
	return s.Store.Put(ctx, key, data, opts)
}

// A write that lands while Close flushes must fail, or be stored before
// Close reports success: Close takes the list of blocks to store once, so
// a write acknowledged after that would be lost.
func TestCloseStoresOrRefusesWritesDuringTheFinalFlush(t *testing.T) {
	g := Geometry{Size: 16 * mib, BlockSize: mib}
	mem := memstore.New()
	store := &heldPut{Store: mem, key: "00000000", at: make(chan struct{}), proceed: make(chan struct{})}
	d, err := Open(t.Context(), Config{Store: store, Geometry: g, CacheSize: 16 * mib, Parallel: 4, WriteDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// Partial blocks: nothing is uploaded before a flush.
	if _, err := d.WriteAt(pattern(4096, 30), 0); err != nil {
		t.Fatal(err)
	}

	// Writers each filling a block of their own, 4 KiB at a time, until
	// the device refuses them.
	type write struct {
		off  int64
		data []byte
	}
	const writers = 4
	var (
		mu    sync.Mutex
		acked []write
		wg    sync.WaitGroup
	)
	started := make(chan struct{}, writers)
	ack := func(off int64, p []byte, err error) bool {
		if err != nil {
			if !errors.Is(err, ErrClosed) {
				t.Errorf("write at %d during Close: %v, want ErrClosed", off, err)
			}
			return false
		}
		mu.Lock()
		acked = append(acked, write{off, p})
		mu.Unlock()
		return true
	}
	for w := range int64(writers) {
		wg.Go(func() {
			for i := range int64(mib / 4096) {
				off := (2+w)*mib + i*4096
				p := pattern(4096, uint64(off))
				_, err := d.WriteAt(p, off)
				if !ack(off, p, err) {
					return
				}
				if i == 0 {
					started <- struct{}{}
				}
			}
		})
	}
	for range writers {
		<-started
	}

	closed := make(chan error, 1)
	go func() { closed <- d.Close() }()
	<-store.at // the final flush is under way
	p := pattern(4096, 31)
	_, err = d.WriteAt(p, mib)
	ack(mib, p, err)
	store.proceed <- struct{}{}
	closeErr := <-closed
	wg.Wait()
	if closeErr != nil {
		t.Fatalf("Close: %v", closeErr)
	}

	d2 := testDevice(t, mem, Geometry{}, 16*mib)
	for _, w := range acked {
		got := make([]byte, len(w.data))
		if _, err := d2.ReadAt(got, w.off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, w.data) {
			t.Fatalf("the write at %d was acknowledged, Close returned nil, and the store does not hold it", w.off)
		}
	}
}
