package kernel_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/objbacker/objbacker/blockmap"
	"github.com/objbacker/objbacker/kernel"
	"github.com/objbacker/objbacker/kernel/kerneltest"
	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/memstore"
	"github.com/objbacker/objbacker/objstore/storetest"
)

// Small blocks and a small cache, so the requests cross blocks, merge,
// read-modify-write and evict.
const (
	testDevSize   = 4 << 20
	testBlockSize = 64 << 10
)

// openDevice opens a blockmap device on store; size zero means as
// recorded. The cleanup closes it unless the test did.
func openDevice(t *testing.T, store objstore.Store, size int64) *device {
	t.Helper()
	g := blockmap.Geometry{}
	if size != 0 {
		g = blockmap.Geometry{Size: size, BlockSize: testBlockSize}
	}
	dev, err := blockmap.Open(t.Context(), blockmap.Config{Store: store, Geometry: g, CacheSize: 8 * testBlockSize,
		Parallel: 4, WriteDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	d := &device{Device: dev}
	t.Cleanup(func() { d.Close() })
	return d
}

// device closes its blockmap device once: a second Close would remove the
// mount marker of the device opened after it on the same store.
type device struct {
	*blockmap.Device
	once sync.Once
	err  error
}

func (d *device) Close() error {
	d.once.Do(func() { d.err = d.Device.Close() })
	return d.err
}

func blockmapExport(name string, dev *device) *kernel.Export {
	return &kernel.Export{Name: name, Backend: dev, BlockSize: uint32(dev.Geometry().BlockSize)}
}

// TestModelOnBlockmap: many concurrent writes, trims, flushes and reads
// through the protocol to two blockmap devices agree with a model, during
// the run and after the devices are reopened from their stores.
func TestModelOnBlockmap(t *testing.T) {
	stores := []*memstore.Store{memstore.New(), memstore.New()}
	names := []string{"disk0", "disk1"}
	var exports []*kernel.Export
	for i, st := range stores {
		exports = append(exports, blockmapExport(names[i], openDevice(t, st, testDevSize)))
	}
	d := startDaemon(t, &kernel.Server{Exports: exports})

	// Each worker owns a region of one export, split in quarters; a round
	// sends one request per quarter at once, so requests overlap in time
	// but never in range, and the model stays exact.
	const workers, rounds = 8, 25
	models := [][]byte{make([]byte, testDevSize), make([]byte, testDevSize)}
	var wg sync.WaitGroup
	for w := range 2 * workers {
		ex := w % 2
		id := d.export(t, names[ex])
		region := testDevSize / workers
		base := (w / 2) * region
		model := models[ex][base : base+region]
		rng := rand.New(rand.NewPCG(uint64(w), 7))
		wg.Go(func() {
			for round := range rounds {
				if !modelRound(t, d.k, rng, id, base, model, round) {
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if err := d.k.Err(); err != nil {
		t.Fatal(err)
	}
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	checkByes(t, d.k, map[string]syscall.Errno{"disk0": 0, "disk1": 0})

	for i, e := range exports {
		if err := e.Backend.(*device).Close(); err != nil {
			t.Fatal(err)
		}
		dev := openDevice(t, stores[i], 0)
		got := make([]byte, testDevSize)
		if _, err := dev.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, models[i]) {
			t.Errorf("%s after reopening differs from the model at byte %d", names[i], firstDiff(got, models[i]))
		}
	}
}

// modelRound sends one request per quarter of the region at once, then
// checks each reply against the model; false if the test failed.
func modelRound(t *testing.T, k *kerneltest.Kernel, rng *rand.Rand, id uint32, base int, model []byte, round int) bool {
	quarter := len(model) / 4
	type pending struct {
		h       kernel.Header
		data    []byte
		off     int
		replies <-chan kerneltest.Reply
	}
	var sent []pending
	for q := range 4 {
		sectors := quarter / kernel.SectorSize
		first := rng.IntN(sectors)
		n := 1 + rng.IntN(min(sectors-first, 3*testBlockSize/kernel.SectorSize))
		off, length := q*quarter+first*kernel.SectorSize, n*kernel.SectorSize
		p := pending{off: off}
		switch r := rng.IntN(10); {
		case r < 5:
			p.data = pattern(length, byte(round*4+q+int(id)*31))
			p.h = writeReq(id, uint64(base+off), uint32(length))
			if r == 0 {
				p.h.Flags = kernel.FlagFUA
			}
		case r < 6:
			p.h = trimReq(id, uint64(base+off), uint32(length))
		case r < 7:
			p.h = flushReq(id)
		default:
			p.h = readReq(id, uint64(base+off), uint32(length))
		}
		ch, err := k.Send(p.h, p.data)
		if err != nil {
			t.Error(err)
			return false
		}
		p.replies = ch
		sent = append(sent, p)
	}
	for _, p := range sent {
		r, ok := <-p.replies
		if !ok || r.Status != 0 {
			t.Errorf("%v at %d+%d: ok %v status %v", p.h.Op, p.h.Offset, p.h.Length, ok, r.Status)
			return false
		}
		switch p.h.Op {
		case kernel.OpWrite:
			copy(model[p.off:], p.data)
		case kernel.OpTrim:
			clear(model[p.off : p.off+int(p.h.Length)])
		case kernel.OpRead:
			if want := model[p.off : p.off+int(p.h.Length)]; !bytes.Equal(r.Data, want) {
				t.Errorf("read at %d+%d differs from the model at byte %d", p.h.Offset, p.h.Length, firstDiff(r.Data, want))
				return false
			}
		}
	}
	return true
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestRestart: the daemon stops (its unflushed writes are made durable by
// the shutdown), the device is closed, a new daemon opens the same bucket
// and attaches to a new channel, and the data is there.
func TestRestart(t *testing.T) {
	store := memstore.New()
	dev := openDevice(t, store, testDevSize)
	d := startDaemon(t, &kernel.Server{Exports: []*kernel.Export{blockmapExport("disk", dev)}})
	id := d.export(t, "disk")
	writes := map[uint64][]byte{
		0:                       pattern(testBlockSize, 1),   // a whole block
		3*testBlockSize + 512:   pattern(4096, 2),            // part of a block
		5*testBlockSize - 1024:  pattern(testBlockSize, 3),   // across two blocks
		testDevSize - 8192:      pattern(8192, 4),            // the end
		10 * testBlockSize:      pattern(2*testBlockSize, 5), // then trimmed
		12*testBlockSize + 4096: pattern(512, 6),
	}
	for off, data := range writes {
		if r := d.do(t, writeReq(id, off, uint32(len(data))), data); r.Status != 0 {
			t.Fatalf("write at %d: %v", off, r.Status)
		}
	}
	if r := d.do(t, trimReq(id, 10*testBlockSize, 2*testBlockSize), nil); r.Status != 0 {
		t.Fatalf("trim: %v", r.Status)
	}
	writes[10*testBlockSize] = make([]byte, 2*testBlockSize)
	// No FLUSH: stopping is what must make these durable.
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	checkByes(t, d.k, map[string]syscall.Errno{"disk": 0})
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}

	restarted := startDaemon(t, &kernel.Server{Exports: []*kernel.Export{blockmapExport("disk", openDevice(t, store, 0))}})
	e, _ := restarted.k.Export("disk")
	if e.Size != testDevSize || e.BlockSize != testBlockSize {
		t.Errorf("after restart the export registers as %+v", e)
	}
	for off, data := range writes {
		r := restarted.do(t, readReq(e.ID, off, uint32(len(data))), nil)
		if r.Status != 0 || !bytes.Equal(r.Data, data) {
			t.Errorf("read at %d after restart: status %v, differs at byte %d", off, r.Status, firstDiff(r.Data, data))
		}
	}
}

// TestBlockmapErrors: the core's own refusals and store failures reach the
// kernel as EINVAL and EIO, and a FLUSH succeeds again once the store is
// back.
func TestBlockmapErrors(t *testing.T) {
	mem := memstore.New()
	seed := openDevice(t, mem, testDevSize)
	if _, err := seed.WriteAt(pattern(testBlockSize, 1), 0); err != nil {
		t.Fatal(err)
	}
	if err := seed.Close(); err != nil {
		t.Fatal(err)
	}
	store := &failingStore{Store: mem}
	d := startDaemon(t, &kernel.Server{Exports: []*kernel.Export{blockmapExport("disk", openDevice(t, store, 0))}})

	if r := d.do(t, readReq(0, testDevSize, 512), nil); r.Status != syscall.EINVAL {
		t.Errorf("read past the end: %v, want EINVAL", r.Status)
	}
	store.fail.Store(true)
	if r := d.do(t, readReq(0, 0, 512), nil); r.Status != syscall.EIO {
		t.Errorf("read of a stored block with a failing store: %v, want EIO", r.Status)
	}
	// A partial block stays in the cache until a FLUSH sends it out.
	if r := d.do(t, writeReq(0, 2*testBlockSize, 4096), pattern(4096, 2)); r.Status != 0 {
		t.Fatalf("write: %v", r.Status)
	}
	if r := d.do(t, flushReq(0), nil); r.Status != syscall.EIO {
		t.Errorf("flush with a failing store: %v, want EIO", r.Status)
	}
	fua := writeReq(0, 5*testBlockSize, 4096)
	fua.Flags = kernel.FlagFUA
	if r := d.do(t, fua, pattern(4096, 3)); r.Status != syscall.EIO {
		t.Errorf("FUA write with a failing store: %v, want EIO", r.Status)
	}
	store.fail.Store(false)
	if r := d.do(t, flushReq(0), nil); r.Status != 0 {
		t.Errorf("flush after the store recovered: %v", r.Status)
	}
	if r := d.do(t, readReq(0, 0, testBlockSize), nil); r.Status != 0 || !bytes.Equal(r.Data, pattern(testBlockSize, 1)) {
		t.Errorf("read after the store recovered: %v", r.Status)
	}
}

// failingStore fails every Get and Put while fail is set.
type failingStore struct {
	objstore.Store
	fail atomic.Bool
}

func (s *failingStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, objstore.Attrs, error) {
	if s.fail.Load() {
		return nil, objstore.Attrs{}, errInjected
	}
	return s.Store.Get(ctx, key, off, n)
}

func (s *failingStore) Put(ctx context.Context, key string, data []byte, opts objstore.PutOptions) (objstore.Attrs, error) {
	if s.fail.Load() {
		return objstore.Attrs{}, errInjected
	}
	return s.Store.Put(ctx, key, data, opts)
}

// A stop whose writes wait for room in a cache full of blocks the store
// never takes ends once the device is aborted (the daemon's stop
// timeout): the writes fail, the final sync fails, and Serve returns.
func TestStopEndsWritesWaitingForRoomOnAbort(t *testing.T) {
	dev := openDevice(t, storetest.StalledPuts{Store: memstore.New()}, testDevSize)
	d := startDaemon(t, &kernel.Server{Exports: []*kernel.Export{blockmapExport("disk0", dev)}})
	id := d.export(t, "disk0")
	// The cache holds 8 blocks, 2 of them left for read-modify-writes:
	// 6 whole-block writes fill it, and 4 more wait for room.
	var replies []<-chan kerneltest.Reply
	for n := range uint64(10) {
		r, err := d.k.Send(writeReq(id, n*testBlockSize, testBlockSize), pattern(testBlockSize, byte(n+1)))
		if err != nil {
			t.Fatal(err)
		}
		replies = append(replies, r)
	}
	for deadline := time.Now().Add(10 * time.Second); dev.Stats().Stalls == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no write waits for room")
		}
	}
	d.cancel()
	dev.Abort()
	select {
	case err := <-d.done:
		close(d.done) // as wait does: the cleanup's stop returns nil
		if err == nil {
			t.Fatal("Serve reported a clean stop with blocks unstored")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still waiting 10 s after Abort")
	}
	for _, r := range replies {
		<-r // Serve answered every request before it returned
	}
}
