package kernel_test

import (
	"bytes"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/objbacker/objbacker/kernel"
	"github.com/objbacker/objbacker/kernel/kerneltest"
)

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// TestRepliesOutOfOrder: a request held in the backend does not hold back
// the replies of those sent after it.
func TestRepliesOutOfOrder(t *testing.T) {
	b := newMemBackend(1 << 20)
	release, held := make(chan struct{}), make(chan struct{})
	b.hook = func(op string, off int64) {
		if off == 0 {
			close(held)
			<-release
		}
	}
	d := startDaemon(t, &kernel.Server{Exports: []*kernel.Export{{Name: "disk", Backend: b}}})
	// Opened by the cleanup too, so a failing test does not leave the
	// daemon stuck in the backend.
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock)
	id := d.export(t, "disk")
	first, err := d.k.Send(readReq(id, 0, 4096), nil)
	if err != nil {
		t.Fatal(err)
	}
	<-held
	data := pattern(8192, 3)
	if r := d.do(t, writeReq(id, 8192, 8192), data); r.Status != 0 {
		t.Fatalf("write behind a held read: %v", r.Status)
	}
	if r := d.do(t, readReq(id, 8192, 8192), nil); r.Status != 0 || !bytes.Equal(r.Data, data) {
		t.Fatalf("read behind a held read: %v", r.Status)
	}
	select {
	case <-first:
		t.Fatal("the held read replied before it was released")
	default:
	}
	unblock()
	if r := <-first; r.Status != 0 || len(r.Data) != 4096 {
		t.Fatalf("held read: %v, %d bytes", r.Status, len(r.Data))
	}
	if err := d.k.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestManyInFlight: many requests run at once and complete in the order
// the backend finishes them, each reply matched to its request by id.
func TestManyInFlight(t *testing.T) {
	const n = 48
	b := newMemBackend(n * 4096)
	for i := range n {
		copy(b.data[i*4096:], pattern(4096, byte(i)))
	}
	// Later requests finish sooner.
	b.hook = func(op string, off int64) { time.Sleep(time.Duration(n-off/4096) * 2 * time.Millisecond) }
	d := startDaemon(t, &kernel.Server{Exports: []*kernel.Export{{Name: "disk", Backend: b}}})
	id := d.export(t, "disk")

	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for i := range n {
		ch, err := d.k.Send(readReq(id, uint64(i*4096), 4096), nil)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			r, ok := <-ch
			if !ok || r.Status != 0 || !bytes.Equal(r.Data, pattern(4096, byte(i))) {
				t.Errorf("read %d: ok %v status %v", i, ok, r.Status)
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		})
	}
	wg.Wait()
	if b.peak.Load() < 8 {
		t.Errorf("at most %d requests ran at once", b.peak.Load())
	}
	if slices.IsSorted(order) {
		t.Errorf("replies came in request order %v; the slow first requests held the rest back", order)
	}
	if err := d.k.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestFlushWaitsForEarlierWrites: a FLUSH syncs only once every write of
// its export received before it has ended, and does not wait for other
// exports.
func TestFlushWaitsForEarlierWrites(t *testing.T) {
	a, other := newMemBackend(1<<20), newMemBackend(1<<20)
	release, held := make(chan struct{}), make(chan struct{})
	a.hook = func(op string, off int64) {
		if op == "write" {
			close(held)
			<-release
		}
	}
	d := startDaemon(t, &kernel.Server{Exports: []*kernel.Export{{Name: "a", Backend: a}, {Name: "other", Backend: other}}})
	// Opened by the cleanup too, so a failing test does not leave the
	// daemon stuck in the backend.
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock)
	ida, idother := d.export(t, "a"), d.export(t, "other")

	write, err := d.k.Send(writeReq(ida, 0, 4096), pattern(4096, 1))
	if err != nil {
		t.Fatal(err)
	}
	<-held
	flush, err := d.k.Send(flushReq(ida), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Requests after the FLUSH are answered, so it has been admitted...
	if r := d.do(t, readReq(ida, 8192, 512), nil); r.Status != 0 {
		t.Fatalf("read: %v", r.Status)
	}
	if r := d.do(t, flushReq(idother), nil); r.Status != 0 {
		t.Fatalf("flush of the other export: %v", r.Status)
	}
	// ...but it waits, without syncing, for the write.
	select {
	case <-flush:
		t.Fatal("FLUSH replied while an earlier write was in progress")
	case <-time.After(100 * time.Millisecond):
	}
	if a.syncs.Load() != 0 || a.syncRaced.Load() {
		t.Fatalf("Sync ran (%d times) before the earlier write ended", a.syncs.Load())
	}
	unblock()
	if r := <-write; r.Status != 0 {
		t.Fatalf("write: %v", r.Status)
	}
	if r := <-flush; r.Status != 0 {
		t.Fatalf("flush: %v", r.Status)
	}
	if a.syncs.Load() != 1 || a.syncRaced.Load() {
		t.Errorf("syncs %d, raced with a write: %v", a.syncs.Load(), a.syncRaced.Load())
	}
}

// TestFUA: a FUA write uses WriteAtFUA, or WriteAt and Sync on a backend
// without it.
func TestFUA(t *testing.T) {
	fua, plain := newMemBackend(1<<20), newMemBackend(1<<20)
	d := startDaemon(t, &kernel.Server{Exports: []*kernel.Export{
		{Name: "fua", Backend: fua}, {Name: "plain", Backend: plainBackend{plain}},
	}})
	for _, name := range []string{"fua", "plain"} {
		h := writeReq(d.export(t, name), 4096, 4096)
		h.Flags = kernel.FlagFUA
		if r := d.do(t, h, pattern(4096, 9)); r.Status != 0 {
			t.Fatalf("%s: FUA write: %v", name, r.Status)
		}
	}
	if fua.fuaWrites.Load() != 1 || fua.syncs.Load() != 0 {
		t.Errorf("FUA backend: %d FUA writes, %d syncs; want 1, 0", fua.fuaWrites.Load(), fua.syncs.Load())
	}
	if plain.syncs.Load() != 1 || !bytes.Equal(plain.bytes(4096, 4096), pattern(4096, 9)) {
		t.Errorf("plain backend: %d syncs, want 1 after the write", plain.syncs.Load())
	}
}

// TestErrorStatuses: refused requests and backend failures get the
// protocol's statuses, refused WRITE payloads are skipped, and the channel
// goes on.
func TestErrorStatuses(t *testing.T) {
	rw, ro, plain := newMemBackend(4<<20), newMemBackend(1<<20), newMemBackend(1<<20)
	failing, full := newMemBackend(1<<20), newMemBackend(1<<20)
	failing.fail, full.fail = errInjected, errnoErr(syscall.ENOSPC)
	d := startDaemon(t, &kernel.Server{Exports: []*kernel.Export{
		{Name: "rw", Backend: rw, BlockSize: 1 << 20},
		{Name: "ro", Backend: ro, ReadOnly: true},
		{Name: "plain", Backend: plainBackend{plain}},
		{Name: "failing", Backend: failing},
		{Name: "full", Backend: full},
	}})
	id := func(name string) uint32 { return d.export(t, name) }

	flags := map[string]uint32{"rw": kernel.ExportTrim, "ro": kernel.ExportReadOnly, "plain": 0}
	for name, want := range flags {
		if e, _ := d.k.Export(name); e.Flags != want || e.SectorSize != kernel.SectorSize {
			t.Errorf("export %s registered with flags %#x sector %d, want %#x, %d", name, e.Flags, e.SectorSize, want, kernel.SectorSize)
		}
	}
	if e, _ := d.k.Export("rw"); e.Size != 4<<20 || e.BlockSize != 1<<20 {
		t.Errorf("rw registered as %+v", e)
	}

	with := func(h kernel.Header, f func(*kernel.Header)) kernel.Header { f(&h); return h }
	cases := []struct {
		name    string
		h       kernel.Header
		payload []byte
		want    syscall.Errno
	}{
		{"read across the end", readReq(id("rw"), 4<<20-512, 1024), nil, syscall.EINVAL},
		{"read past the end", readReq(id("rw"), 8<<20, 512), nil, syscall.EINVAL},
		{"offset not in sectors", readReq(id("rw"), 100, 512), nil, syscall.EINVAL},
		{"write length not in sectors", writeReq(id("rw"), 0, 100), make([]byte, 100), syscall.EINVAL},
		{"empty read", readReq(id("rw"), 0, 0), nil, syscall.EINVAL},
		{"read above the kernel's max I/O", readReq(id("rw"), 0, 2<<20), nil, syscall.EINVAL},
		{"write above the kernel's max I/O", writeReq(id("rw"), 0, 2<<20), make([]byte, 2<<20), syscall.EINVAL},
		{"unknown export", readReq(99, 0, 512), nil, syscall.ENXIO},
		{"unknown op", kernel.Header{Op: 77, Export: id("rw")}, nil, syscall.EOPNOTSUPP},
		{"HELLO from the kernel", kernel.Header{Op: kernel.OpHello, Length: 16}, make([]byte, 16), syscall.EOPNOTSUPP},
		{"other version", with(readReq(id("rw"), 0, 512), func(h *kernel.Header) { h.Version = 9 }), nil, syscall.EPROTO},
		{"FUA on a read", with(readReq(id("rw"), 0, 512), func(h *kernel.Header) { h.Flags = kernel.FlagFUA }), nil, syscall.EINVAL},
		{"unknown write flag", with(writeReq(id("rw"), 0, 512), func(h *kernel.Header) { h.Flags = 1 << 7 }), make([]byte, 512), syscall.EINVAL},
		{"flush with a range", with(flushReq(id("rw")), func(h *kernel.Header) { h.Length = 512 }), nil, syscall.EINVAL},
		{"status in a request", with(readReq(id("rw"), 0, 512), func(h *kernel.Header) { h.Status = syscall.EIO }), nil, syscall.EINVAL},
		{"write to a read-only export", writeReq(id("ro"), 0, 512), make([]byte, 512), syscall.EROFS},
		{"trim of a read-only export", trimReq(id("ro"), 0, 512), nil, syscall.EROFS},
		{"trim without a Trimmer", trimReq(id("plain"), 0, 512), nil, syscall.EOPNOTSUPP},
		{"store failure on read", readReq(id("failing"), 0, 512), nil, syscall.EIO},
		{"store failure on write", writeReq(id("failing"), 0, 512), make([]byte, 512), syscall.EIO},
		{"ENOSPC from the backend", writeReq(id("full"), 0, 512), make([]byte, 512), syscall.ENOSPC},
		{"read of a read-only export", readReq(id("ro"), 0, 512), nil, 0},
		{"flush of a read-only export", flushReq(id("ro")), nil, 0},
		{"trim", trimReq(id("rw"), 0, 8192), nil, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := d.do(t, tc.h, tc.payload)
			if r.Status != tc.want {
				t.Errorf("status %v (%d), want %v (%d)", r.Status, r.Status, tc.want, tc.want)
			}
			if tc.want != 0 && len(r.Data) != 0 {
				t.Errorf("an error reply carried %d bytes", len(r.Data))
			}
		})
	}
	// After all that, the stream is still in step.
	data := pattern(4096, 5)
	if r := d.do(t, writeReq(id("rw"), 4096, 4096), data); r.Status != 0 {
		t.Fatalf("write: %v", r.Status)
	}
	if r := d.do(t, readReq(id("rw"), 4096, 4096), nil); r.Status != 0 || !bytes.Equal(r.Data, data) {
		t.Fatalf("read back: %v", r.Status)
	}
	if err := d.k.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestPayloadBudget: payload bytes in flight stay within MaxBuffered (a
// request larger than all of it runs alone), and requests within
// MaxInflight.
func TestPayloadBudget(t *testing.T) {
	for _, tc := range []struct {
		name          string
		s             kernel.Server
		size          uint32
		n             int
		wantPeak      int64
		wantPeakAbove int64
	}{
		{"bytes", kernel.Server{MaxBuffered: 64 << 10}, 32 << 10, 12, 2, 1},
		{"larger than the budget", kernel.Server{MaxBuffered: 64 << 10}, 128 << 10, 4, 1, 0},
		{"requests", kernel.Server{MaxInflight: 3}, 512, 12, 3, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newMemBackend(1 << 20)
			b.hook = func(string, int64) { time.Sleep(20 * time.Millisecond) }
			s := tc.s
			s.Exports = []*kernel.Export{{Name: "disk", Backend: b}}
			d := startDaemon(t, &s)
			var chans []<-chan kerneltest.Reply
			for i := range tc.n {
				ch, err := d.k.Send(readReq(0, uint64(i)*uint64(tc.size)%(1<<20), tc.size), nil)
				if err != nil {
					t.Fatal(err)
				}
				chans = append(chans, ch)
			}
			for _, ch := range chans {
				if r, ok := <-ch; !ok || r.Status != 0 {
					t.Fatalf("read: ok %v status %v", ok, r.Status)
				}
			}
			if p := b.peak.Load(); p > tc.wantPeak || p <= tc.wantPeakAbove {
				t.Errorf("%d requests in the backend at once, want %d (above %d)", p, tc.wantPeak, tc.wantPeakAbove)
			}
		})
	}
}

// TestBadExports: Serve refuses what the protocol cannot register, before
// writing anything.
func TestBadExports(t *testing.T) {
	ok := newMemBackend(1 << 20)
	for _, tc := range []struct {
		name    string
		exports []*kernel.Export
	}{
		{"none", nil},
		{"no backend", []*kernel.Export{{Name: "a"}}},
		{"duplicate", []*kernel.Export{{Name: "a", Backend: ok}, {Name: "a", Backend: ok}}},
		{"empty name", []*kernel.Export{{Name: "", Backend: ok}}},
		{"long name", []*kernel.Export{{Name: string(make([]byte, kernel.NameMax+1)), Backend: ok}}},
		{"NUL in the name", []*kernel.Export{{Name: "a\x00b", Backend: ok}}},
		{"size not in sectors", []*kernel.Export{{Name: "a", Backend: newMemBackend(1000)}}},
		{"block size", []*kernel.Export{{Name: "a", Backend: ok, BlockSize: 3000}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, dev, err := kerneltest.Pair()
			if err != nil {
				t.Fatal(err)
			}
			defer k.Close()
			s := &kernel.Server{Exports: tc.exports, Log: testLogger(t)}
			if err := s.Serve(t.Context(), dev); err == nil {
				t.Fatal("Serve accepted the exports")
			}
			if _, err := k.Accept(testHello); err == nil {
				t.Fatal("the fake kernel got a HELLO")
			}
		})
	}
}
