package nbd

import (
	"bytes"
	"errors"
	"syscall"
	"testing"

	"github.com/pojntfx/go-nbd/pkg/protocol"

	"github.com/objbacker/objbacker/internal/lendtest"
)

// lendBackend serves large READs through Lender.
type lendBackend struct {
	*memBackend
	*lendtest.Lender
}

func newLendBackend(size int) *lendBackend {
	m := newMemBackend(size)
	return &lendBackend{m, &lendtest.Lender{Read: func(off, n int64) []byte { return m.bytes(int(off), int(n)) }}}
}

func TestLargeReadsAreSentFromLentViews(t *testing.T) {
	const size = 4 << 20
	be := newLendBackend(size)
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
	be.WaitReleased(t, 3)
}

func TestFailedLendIsAnErrorReply(t *testing.T) {
	be := newLendBackend(1 << 20)
	be.Fail = errors.Join(errors.New("store down"), syscall.EIO)
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
