package kernel_test

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/objbacker/objbacker/kernel"
)

// lendBackend serves READs through Lender, in two views each, and counts
// the loans not yet released.
type lendBackend struct {
	*memBackend

	mu          sync.Mutex
	lends, open int
}

func (b *lendBackend) LendAt(off, n int64, views [][]byte) ([][]byte, func(), error) {
	data := b.bytes(int(off), int(n))
	b.mu.Lock()
	b.lends++
	b.open++
	b.mu.Unlock()
	var once sync.Once
	return append(views, data[:n/2], data[n/2:]), func() {
		once.Do(func() {
			b.mu.Lock()
			b.open--
			b.mu.Unlock()
		})
	}, nil
}

func (b *lendBackend) loans() (lends, open int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lends, b.open
}

func TestLargeReadsAreWrittenFromLentViews(t *testing.T) {
	b := &lendBackend{memBackend: newMemBackend(4 << 20)}
	copy(b.data, pattern(4<<20, 5))
	d := startDaemon(t, &kernel.Server{Exports: []*kernel.Export{{Name: "disk", Backend: b}}})
	id := d.export(t, "disk")
	for _, r := range []struct{ off, n int }{{4096, 1 << 20}, {0, 64 << 10}, {8192, 4096}, {3 << 20, 512 << 10}} {
		got := d.do(t, readReq(id, uint64(r.off), uint32(r.n)), nil)
		if got.Status != 0 || !bytes.Equal(got.Data, b.bytes(r.off, r.n)) {
			t.Fatalf("read of %d bytes at %d: status %v, data differs: %v", r.n, r.off, got.Status, !bytes.Equal(got.Data, b.bytes(r.off, r.n)))
		}
	}
	// Three reads are large enough to lend; the 4 KiB one is copied.
	deadline := time.Now().Add(5 * time.Second)
	for {
		lends, open := b.loans()
		if lends == 3 && open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d loans, %d not released after their replies were written; want 3, 0", lends, open)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := d.k.Err(); err != nil {
		t.Fatal(err)
	}
}
