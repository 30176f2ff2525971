package nbd

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"testing"
)

func pattern(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// blockBackend takes whole-block writes through BlockWriter and records
// them, with their FUA flag.
type blockBackend struct {
	*memBackend
	size int64

	mu       sync.Mutex
	lent     int
	adopted  []int64
	fuaFlags []bool
}

func (b *blockBackend) BlockSize() int64 { return b.size }

func (b *blockBackend) BlockBuffer() []byte {
	b.mu.Lock()
	b.lent++
	b.mu.Unlock()
	return make([]byte, b.size)
}

func (b *blockBackend) ReturnBlockBuffer([]byte) {
	b.mu.Lock()
	b.lent--
	b.mu.Unlock()
}

func (b *blockBackend) WriteBlockBuffer(buf []byte, off int64, fua bool) error {
	b.mu.Lock()
	b.lent--
	b.adopted = append(b.adopted, off)
	b.fuaFlags = append(b.fuaFlags, fua)
	b.mu.Unlock()
	_, err := b.memBackend.WriteAt(buf, off)
	return err
}

func TestWholeBlockWritesGoThroughBlockWriter(t *testing.T) {
	const bs = 64 << 10
	be := &blockBackend{memBackend: newMemBackend(16 * bs), size: bs}
	ts := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: be}}})
	c := dialRaw(t, ts.addr)
	c.handshake("disk")
	whole, fua, part, unaligned := pattern(bs, 1), pattern(bs, 2), pattern(bs/2, 3), pattern(bs, 4)
	c.request(cmdWrite, 0, 1, 3*bs, bs, whole)
	c.request(cmdWrite, cmdFlagFUA, 2, 5*bs, bs, fua)
	c.request(cmdWrite, 0, 3, 7*bs, bs/2, part)
	c.request(cmdWrite, 0, 4, 9*bs+4096, bs, unaligned)
	for range 4 {
		if h := c.reply(); h.Error != 0 {
			t.Fatalf("write %d failed: %d", h.Handle, h.Error)
		}
	}
	for _, w := range []struct {
		off  int
		data []byte
	}{{3 * bs, whole}, {5 * bs, fua}, {7 * bs, part}, {9*bs + 4096, unaligned}} {
		if !bytes.Equal(be.bytes(w.off, len(w.data)), w.data) {
			t.Errorf("data at %d differs", w.off)
		}
	}
	be.mu.Lock()
	defer be.mu.Unlock()
	if len(be.adopted) != 2 || be.adopted[0]+be.adopted[1] != 8*bs || be.fuaFlags[0] == be.fuaFlags[1] {
		t.Fatalf("block writes at %v with FUA %v, want the blocks at %d and %d, one with FUA", be.adopted, be.fuaFlags, 3*bs, 5*bs)
	}
	if be.lent != 0 {
		t.Fatalf("%d block buffers not given back", be.lent)
	}
}
