package nbd

import (
	"bytes"
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pojntfx/go-nbd/pkg/protocol"
)

// lendBackend serves large READs through Lender, in two views each, and
// counts the loans not yet released.
type lendBackend struct {
	*memBackend
	fail error

	mu          sync.Mutex
	lends, open int
}

func (b *lendBackend) LendAt(off, n int64, views [][]byte) ([][]byte, func(), error) {
	if b.fail != nil {
		return nil, nil, b.fail
	}
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

func TestLargeReadsAreSentFromLentViews(t *testing.T) {
	const size = 4 << 20
	be := &lendBackend{memBackend: newMemBackend(size)}
	copy(be.data, pattern(size, 9))
	ts := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: be}}})
	c := dialRaw(t, ts.addr)
	c.handshake("disk")
	reads := []struct{ off, n int }{{4096, 1 << 20}, {0, lendMin}, {8192, 4096}, {3 << 20, 512 << 10}}
	for i, r := range reads {
		c.request(protocol.TRANSMISSION_TYPE_REQUEST_READ, 0, uint64(i), uint64(r.off), uint32(r.n), nil)
	}
	for range reads {
		h := c.reply()
		if h.Error != 0 {
			t.Fatalf("read %d failed: %d", h.Handle, h.Error)
		}
		r := reads[h.Handle]
		got := make([]byte, r.n)
		c.read(got)
		if !bytes.Equal(got, be.bytes(r.off, r.n)) {
			t.Fatalf("read %d of %d bytes at %d returned other data", h.Handle, r.n, r.off)
		}
	}
	// Three reads are large enough to lend; the 4 KiB one is copied.
	deadline := time.Now().Add(5 * time.Second)
	for {
		lends, open := be.loans()
		if lends == 3 && open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d loans, %d not released after their replies were sent; want 3, 0", lends, open)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFailedLendIsAnErrorReply(t *testing.T) {
	be := &lendBackend{memBackend: newMemBackend(1 << 20), fail: errors.Join(errors.New("store down"), syscall.EIO)}
	ts := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: be}}})
	c := dialRaw(t, ts.addr)
	c.handshake("disk")
	c.request(protocol.TRANSMISSION_TYPE_REQUEST_READ, 0, 1, 0, lendMin, nil)
	if h := c.reply(); h.Error != errEIO {
		t.Fatalf("reply error %d, want EIO", h.Error)
	}
	// The connection goes on.
	c.request(protocol.TRANSMISSION_TYPE_REQUEST_READ, 0, 2, 0, 4096, nil)
	if h := c.reply(); h.Error != 0 {
		t.Fatalf("a copied read after the failure: error %d", h.Error)
	}
	c.read(make([]byte, 4096))
}
