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

// crossingGets holds each GET of a block object twice, so that a test can
// let other requests overtake it: once sent, before the store serves it,
// and once served, before its answer reaches the device. At each stop it
// announces itself on at and waits for proceed.
type crossingGets struct {
	objstore.Store
	at, proceed chan struct{}
}

func (s *crossingGets) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, objstore.Attrs, error) {
	if len(key) != 8 {
		return s.Store.Get(ctx, key, off, n)
	}
	s.at <- struct{}{}
	<-s.proceed
	rc, a, err := s.Store.Get(ctx, key, off, n)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(rc)
		rc.Close()
	}
	s.at <- struct{}{}
	<-s.proceed
	if err != nil {
		return nil, a, err
	}
	return io.NopCloser(bytes.NewReader(body)), a, nil
}

// A GET that answers "no object" for a block that was trimmed and then
// written whole and uploaded while the GET was out must not mark the block
// absent: once evicted, it would read as zeros.
func TestStaleFetchLeavesPresenceAlone(t *testing.T) {
	g := Geometry{Size: 8 * mib, BlockSize: mib}
	mem := memstore.New()
	if _, err := mem.Put(t.Context(), "00000001", pattern(mib, 20), objstorePut(g)); err != nil {
		t.Fatal(err)
	}
	store := &crossingGets{Store: mem, at: make(chan struct{}), proceed: make(chan struct{})}
	d, err := Open(t.Context(), Config{Store: store, Geometry: g, CacheSize: 4 * mib, Parallel: 4, ReadAhead: -1, WriteDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	read := make(chan error, 1)
	go func() {
		_, err := d.ReadAt(make([]byte, 4096), mib)
		read <- err
	}()
	<-store.at // the GET is out
	if err := d.Trim(mib, mib); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil { // the DELETE
		t.Fatal(err)
	}
	store.proceed <- struct{}{}
	<-store.at // served: no object
	want := pattern(mib, 21)
	if _, err := d.WriteAt(want, mib); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil { // the PUT
		t.Fatal(err)
	}
	store.proceed <- struct{}{} // the stale answer arrives
	if err := <-read; err != nil {
		t.Fatal(err)
	}

	// Evict block 1 with whole-block writes of others, then read it back.
	for n := int64(2); n < 6; n++ {
		if _, err := d.WriteAt(pattern(mib, uint64(n)), n*mib); err != nil {
			t.Fatal(err)
		}
		if err := d.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	d.mu.Lock()
	evicted := d.blocks[1] == nil
	d.mu.Unlock()
	if !evicted {
		t.Fatal("block 1 is still cached; write more blocks to evict it")
	}
	got := make([]byte, mib)
	go func() {
		// A GET is what a correct presence map costs here.
		for range 2 {
			<-store.at
			store.proceed <- struct{}{}
		}
	}()
	if _, err := d.ReadAt(got, mib); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("block 1 reads back other bytes than written (zeros: %v): a stale GET marked it absent", isZero(got))
	}
}
