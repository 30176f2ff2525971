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

// corruptGets answers the first bad GETs of each block object with a body
// that fails its checksum at the end, as a store's driver reports damage
// in flight.
type corruptGets struct {
	objstore.Store
	mu   sync.Mutex
	bad  int
	seen map[string]int
}

func (s *corruptGets) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, objstore.Attrs, error) {
	rc, a, err := s.Store.Get(ctx, key, off, n)
	if err != nil || len(key) != 8 {
		return rc, a, err
	}
	s.mu.Lock()
	s.seen[key]++
	damaged := s.seen[key] <= s.bad
	s.mu.Unlock()
	if !damaged {
		return rc, a, err
	}
	body, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, a, err
	}
	clear(body)
	return io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{objstore.Transient(objstore.ErrCorrupt)})), a, nil
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// Damage in flight is re-read as often as the store layer retries any
// other transient failure (the fault suite's corrupt-get scenario, with a
// fifth of GET bodies damaged, got EIO from three reads), and a block that
// stays damaged reads as EIO, never as the bad bytes.
func TestCorruptFetchIsReadAgain(t *testing.T) {
	g := Geometry{Size: 4 * mib, BlockSize: mib}
	for _, tc := range []struct {
		bad  int
		want bool
	}{{objstore.DefaultRetryPolicy().Attempts - 1, true}, {fetchAttempts, false}} {
		mem := memstore.New()
		want := pattern(mib, 7)
		if _, err := mem.Put(t.Context(), "00000001", want, objstorePut(g)); err != nil {
			t.Fatal(err)
		}
		store := &corruptGets{Store: mem, bad: tc.bad, seen: map[string]int{}}
		d := testDevice(t, store, g, 4*mib)
		got := make([]byte, mib)
		_, err := d.ReadAt(got, mib)
		switch {
		case tc.want && err != nil:
			t.Errorf("%d damaged answers: %v, want the block after %d reads", tc.bad, err, tc.bad+1)
		case tc.want && !bytes.Equal(got, want):
			t.Errorf("%d damaged answers: the block read back wrong", tc.bad)
		case !tc.want && !errors.Is(err, objstore.ErrCorrupt):
			t.Errorf("%d damaged answers: err %v, want ErrCorrupt", tc.bad, err)
		}
		if n := store.seen["00000001"]; n != min(tc.bad+1, fetchAttempts) {
			t.Errorf("%d damaged answers: %d GETs, want %d", tc.bad, n, min(tc.bad+1, fetchAttempts))
		}
	}
}
