package nbd

import (
	"runtime"
	"testing"
	"time"

	"github.com/pojntfx/go-nbd/pkg/protocol"
)

func TestGracefulShutdown(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	b := newMemBackend(1 << 20)
	b.delay = 200 * time.Millisecond
	ts := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: b}}})
	idle := dialRaw(t, ts.addr) // a client still in the handshake
	c := dialRaw(t, ts.addr)
	c.handshake("disk")

	c.request(protocol.TRANSMISSION_TYPE_REQUEST_WRITE, 0, 1, 0, 4096, make([]byte, 4096))
	if r := c.reply(); r.Error != 0 || r.Handle != 1 {
		t.Fatalf("first write: %+v", r)
	}
	// The second write is in the backend when the server is stopped; its
	// reply must still arrive.
	c.request(protocol.TRANSMISSION_TYPE_REQUEST_WRITE, 0, 2, 4096, 4096, make([]byte, 4096))
	for deadline := time.Now().Add(5 * time.Second); b.active.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second write never reached the backend")
		}
	}
	stopped := make(chan error, 1)
	go func() { stopped <- ts.stop() }()

	if r := c.reply(); r.Error != 0 || r.Handle != 2 {
		t.Fatalf("in-flight write: %+v", r)
	}
	c.expectClosed()
	idle.expectClosed()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if got := b.syncs.Load(); got != 1 {
		t.Errorf("Sync calls = %d, want 1 (the connection wrote without flushing)", got)
	}

	// Serve waits for its connections, so only the test's own goroutines
	// should remain; give the runtime a moment to reap the exited ones.
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after shutdown, %d before:\n%s", n, goroutines, buf[:runtime.Stack(buf, true)])
	}
}
