package kernel_test

import (
	"bytes"
	"testing"

	"github.com/objbacker/objbacker/internal/lendtest"
	"github.com/objbacker/objbacker/kernel"
)

// lendBackend serves large READs through Lender.
type lendBackend struct {
	*memBackend
	*lendtest.Lender
}

func TestLargeReadsAreWrittenFromLentViews(t *testing.T) {
	m := newMemBackend(4 << 20)
	copy(m.data, pattern(4<<20, 5))
	b := &lendBackend{m, &lendtest.Lender{Read: func(off, n int64) []byte { return m.bytes(int(off), int(n)) }}}
	d := startDaemon(t, &kernel.Server{Exports: []*kernel.Export{{Name: "disk", Backend: b}}})
	id := d.export(t, "disk")
	for _, r := range []struct{ off, n int }{{4096, 1 << 20}, {0, 64 << 10}, {8192, 4096}, {3 << 20, 512 << 10}} {
		got := d.do(t, readReq(id, uint64(r.off), uint32(r.n)), nil)
		if got.Status != 0 || !bytes.Equal(got.Data, m.bytes(r.off, r.n)) {
			t.Fatalf("read of %d bytes at %d: status %v, or other data", r.n, r.off, got.Status)
		}
	}
	// Three reads are large enough to lend; the 4 KiB one is copied.
	b.WaitReleased(t, 3)
	if err := d.k.Err(); err != nil {
		t.Fatal(err)
	}
}
