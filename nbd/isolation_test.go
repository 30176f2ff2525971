package nbd

import (
	"log/slog"
	"sync"
	"testing"
	"time"
)

// stalledWrites is a backend whose writes wait until release is closed: a
// store that stopped answering.
type stalledWrites struct {
	*memBackend
	release chan struct{}
	entered chan struct{}
}

func (b *stalledWrites) WriteAt(p []byte, off int64) (int, error) {
	b.entered <- struct{}{}
	<-b.release
	return b.memBackend.WriteAt(p, off)
}

// An export whose store has stalled holds its own payload budget only:
// another export's client is served meanwhile, and so is a second
// connection to the stalled export, within the half of its budget the
// first connection may not take.
func TestStalledExportHoldsUpNoOther(t *testing.T) {
	const (
		io     = 64 << 10
		budget = 8 * io
	)
	slow := &stalledWrites{memBackend: newMemBackend(4 << 20), release: make(chan struct{}), entered: make(chan struct{}, 64)}
	ts := startServer(t, &Server{
		Exports: []*Export{
			{Name: "slow", Backend: slow, MaxBlockSize: io, MaxBuffered: budget},
			{Name: "fast", Backend: newMemBackend(4 << 20), MaxBlockSize: io, MaxBuffered: budget},
		},
		Log: slog.New(slog.DiscardHandler),
	})
	var once sync.Once
	unstall := func() { once.Do(func() { close(slow.release) }) }
	defer unstall()

	// More writes than the whole budget on the slow export, from one
	// connection: it may hold half, and the rest wait for its share.
	stuck := dialRaw(t, ts.addr)
	stuck.handshake("slow")
	payload := make([]byte, io)
	for i := range 2 * budget / io {
		stuck.request(cmdWrite, 0, uint64(i), uint64(i)*io, io, payload)
	}
	for range budget / 2 / io {
		<-slow.entered
	}

	other := newCanary(t, ts.addr, "fast", 0)
	for range 20 {
		other.round(t)
	}
	// A second client of the stalled export still gets its reads in.
	second := dialRaw(t, ts.addr)
	second.handshake("slow")
	second.nc.SetDeadline(time.Now().Add(5 * time.Second))
	for i := range 4 {
		second.request(cmdRead, 0, uint64(i), 0, io, nil)
		if r := second.reply(); r.Error != 0 {
			t.Fatalf("read on the stalled export's second connection: %+v", r)
		}
		second.read(payload)
	}

	unstall()
	for range 2 * budget / io {
		if r := stuck.reply(); r.Error != 0 {
			t.Fatalf("stalled write, once the store answered: %+v", r)
		}
	}
}
