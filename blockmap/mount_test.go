package blockmap

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/memstore"
)

func mountConfig(store objstore.Store, force bool) Config {
	return Config{Store: store, Geometry: Geometry{Size: 8 * mib, BlockSize: mib}, CacheSize: 4 * mib, Force: force, WriteDelay: time.Hour}
}

func markerToken(t *testing.T, store objstore.Store) (string, bool) {
	t.Helper()
	m, ok, err := ReadMountMarker(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	return m.Token, ok
}

// TestCloseKeepsATakenOverMarker: daemon A is stuck, B takes the bucket
// over with --force, then A stops. A must not remove B's marker, or a third
// daemon would start beside B without --force.
func TestCloseKeepsATakenOverMarker(t *testing.T) {
	mem := memstore.New()
	a, err := Open(t.Context(), mountConfig(mem, false))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(t.Context(), mountConfig(mem, true))
	if err != nil {
		t.Fatal(err)
	}
	bToken, _ := markerToken(t, mem)
	if err := a.Close(); !errors.Is(err, ErrMountNotReleased) {
		t.Fatalf("A's Close = %v; want ErrMountNotReleased (the marker is B's)", err)
	}
	if tok, ok := markerToken(t, mem); !ok || tok != bToken {
		t.Fatalf("after A's Close the marker is %q (present %v); want B's %q", tok, ok, bToken)
	}
	if _, err := Open(t.Context(), mountConfig(mem, false)); !errors.Is(err, ErrMounted) {
		t.Fatalf("a third daemon while B serves: %v; want ErrMounted", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("B's Close: %v", err)
	}
	if _, ok := markerToken(t, mem); ok {
		t.Fatal("B's Close left its marker")
	}
}

// forcedBetween replaces the marker, as a daemon started with --force
// would, just before a conditional delete of it reaches the store.
type forcedBetween struct{ objstore.Store }

func (s forcedBetween) DeleteIfMatch(ctx context.Context, key, etag string) error {
	if _, err := ClaimMount(ctx, s.Store, true); err != nil {
		return err
	}
	return s.Store.DeleteIfMatch(ctx, key, etag)
}

// TestReleaseIsConditional: a marker replaced between Release's read and
// its delete stays.
func TestReleaseIsConditional(t *testing.T) {
	mem := memstore.New()
	mt, err := ClaimMount(t.Context(), forcedBetween{mem}, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := mt.Release(t.Context()); !errors.Is(err, ErrMountNotReleased) {
		t.Fatalf("Release = %v; want ErrMountNotReleased", err)
	}
	if tok, ok := markerToken(t, mem); !ok || tok == mt.token {
		t.Fatalf("marker present %v, token %q: want the other daemon's", ok, tok)
	}
}

// lostMarkerAnswer stores the first mount marker PUT and reports a
// transient failure, as when the answer is lost on the way back.
type lostMarkerAnswer struct {
	objstore.Store
	lost bool
}

func (s *lostMarkerAnswer) Put(ctx context.Context, key string, data []byte, opts objstore.PutOptions) (objstore.Attrs, error) {
	a, err := s.Store.Put(ctx, key, data, opts)
	if err == nil && key == MountMarkerKey && !s.lost {
		s.lost = true
		return objstore.Attrs{}, objstore.Transient(errors.New("connection reset by peer"))
	}
	return a, err
}

// TestOpenSettlesItsOwnMarker: the create-only marker PUT went through but
// its answer was lost; the retry is refused by our own marker, which Open
// must recognise instead of refusing the bucket (or stranding the marker).
func TestOpenSettlesItsOwnMarker(t *testing.T) {
	mem := memstore.New()
	store := &lostMarkerAnswer{Store: mem}
	d, err := Open(t.Context(), mountConfig(objstore.Retrying(store, objstore.RetryPolicy{Attempts: 3}, nil), false))
	if err != nil {
		t.Fatalf("Open after a lost answer to the marker PUT: %v", err)
	}
	if !store.lost {
		t.Fatal("the double lost no answer")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := markerToken(t, mem); ok {
		t.Fatal("the marker outlived a clean Close")
	}
}

// stalledList holds the listing of blocks until its context ends, like a
// start-up interrupted by SIGTERM.
type stalledList struct {
	objstore.Store
	listing chan struct{}
}

func (s stalledList) List(ctx context.Context, prefix, startAfter string, fn func(objstore.ObjectInfo) error) error {
	close(s.listing)
	<-ctx.Done()
	return ctx.Err()
}

// TestCancelledOpenRemovesItsMarker: a start-up cancelled after it set its
// marker gives it back, although its context is gone.
func TestCancelledOpenRemovesItsMarker(t *testing.T) {
	mem := memstore.New()
	store := stalledList{Store: mem, listing: make(chan struct{})}
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-store.listing
		cancel()
	}()
	if _, err := Open(ctx, mountConfig(store, false)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Open = %v; want context.Canceled", err)
	}
	if _, ok := markerToken(t, mem); ok {
		t.Fatal("a cancelled start-up left its mount marker")
	}
}

// stalledMarkerPut stores the marker, then holds the answer until the
// context ends: a SIGTERM while the PUT's answer is on its way.
type stalledMarkerPut struct {
	objstore.Store
	putting chan struct{}
}

func (s stalledMarkerPut) Put(ctx context.Context, key string, data []byte, opts objstore.PutOptions) (objstore.Attrs, error) {
	a, err := s.Store.Put(ctx, key, data, opts)
	if key == MountMarkerKey {
		close(s.putting)
		<-ctx.Done()
		return objstore.Attrs{}, ctx.Err()
	}
	return a, err
}

// TestCancelledClaimRemovesItsMarker: the claim cannot know whether its PUT
// landed, so it removes the marker if it is ours.
func TestCancelledClaimRemovesItsMarker(t *testing.T) {
	mem := memstore.New()
	store := stalledMarkerPut{Store: mem, putting: make(chan struct{})}
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-store.putting
		cancel()
	}()
	if _, err := Open(ctx, mountConfig(store, false)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Open = %v; want context.Canceled", err)
	}
	if _, ok := markerToken(t, mem); ok {
		t.Fatal("a claim cancelled during its PUT left the marker")
	}
}
