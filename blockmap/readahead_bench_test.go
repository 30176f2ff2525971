package blockmap

import (
	"bytes"
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/memstore"
)

// BenchmarkReadAhead reads a device sequentially at queue depth 1, a block
// a read, through a store that answers each GET after 5 ms: what a reader
// gets is what read-ahead keeps in flight per round trip. window4 caps the
// window at the old fixed read-ahead of 4 blocks; default is the adaptive
// window's default, Parallel blocks; parallel64 grows to 64 blocks. The
// cache holds half the device, so that every pass reads cold blocks.
func BenchmarkReadAhead(b *testing.B) {
	const bs = 256 << 10
	g := Geometry{Size: 512 * bs, BlockSize: bs}
	mem := memstore.New()
	w, err := Open(b.Context(), Config{Store: mem, Geometry: g, CacheSize: 16 * bs, ReadAhead: -1})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := w.WriteAt(pattern(int(g.Size), 5), 0); err != nil {
		b.Fatal(err)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	store := newLatencyStore(b, mem, 5*time.Millisecond)
	for _, c := range []struct {
		name                string
		readAhead, parallel int
	}{
		{"window4", 4, 16},
		{"default", 0, 16},
		{"parallel64", 0, 64},
	} {
		b.Run(c.name, func(b *testing.B) {
			d, err := Open(b.Context(), Config{Store: store, CacheSize: 256 * bs, Parallel: c.parallel, ReadAhead: c.readAhead})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			store.maxFlight.Store(0)
			buf := make([]byte, bs)
			b.SetBytes(bs)
			blk := int64(0)
			for b.Loop() {
				if _, err := d.ReadAt(buf, blk*bs); err != nil {
					b.Fatal(err)
				}
				blk = (blk + 1) % g.Blocks()
			}
			b.ReportMetric(float64(d.maxWindow), "window")
			b.ReportMetric(float64(store.maxFlight.Load()), "max-gets")
			b.ReportMetric(float64(d.Stats().ReadAheadWasted), "wasted")
		})
	}
}

// latencyStore answers GETs of the blocks of a store frozen when it was
// made, each after a delay, without copying them: memstore's copy of every
// body would cost more CPU than the device does, and the benchmark would
// measure that rather than the latency the read-ahead hides.
type latencyStore struct {
	objstore.Store
	delay     time.Duration
	objects   map[string]frozenObject
	inflight  atomic.Int64
	maxFlight atomic.Int64
}

type frozenObject struct {
	data  []byte
	attrs objstore.Attrs
}

func newLatencyStore(b testing.TB, s objstore.Store, delay time.Duration) *latencyStore {
	l := &latencyStore{Store: s, delay: delay, objects: make(map[string]frozenObject)}
	err := s.List(b.Context(), "", "", func(info objstore.ObjectInfo) error {
		rc, attrs, err := s.Get(b.Context(), info.Key, 0, -1)
		if err != nil {
			return err
		}
		defer rc.Close()
		data, err := io.ReadAll(rc)
		l.objects[info.Key] = frozenObject{data, attrs}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return l
}

func (l *latencyStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, objstore.Attrs, error) {
	o, ok := l.objects[key]
	if !ok || off != 0 || n != -1 {
		return l.Store.Get(ctx, key, off, n)
	}
	k := l.inflight.Add(1)
	defer l.inflight.Add(-1)
	for m := l.maxFlight.Load(); k > m && !l.maxFlight.CompareAndSwap(m, k); m = l.maxFlight.Load() {
	}
	time.Sleep(l.delay)
	return io.NopCloser(bytes.NewReader(o.data)), o.attrs, nil
}
