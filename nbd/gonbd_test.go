package nbd

import (
	"bytes"
	"net"
	"sync"
	"testing"

	"github.com/pojntfx/go-nbd/pkg/server"
)

// TestGoNBDDropIn serves one backend through go-nbd's own server.Handle and
// through ours: the Backend contract stays go-nbd's, so a backend written
// for either works with both.
func TestGoNBDDropIn(t *testing.T) {
	b := newMemBackend(4 << 20)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var handlers sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		handlers.Wait()
	})
	handlers.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			handlers.Go(func() {
				defer conn.Close()
				// SupportsMultiConn must be set: go-nbd's zero Options send
				// transmission flags 0, which every client rejects.
				err := server.Handle(conn, []*server.Export{{Name: "disk", Backend: b}}, &server.Options{SupportsMultiConn: true})
				if err != nil {
					t.Errorf("go-nbd server.Handle: %v", err)
				}
			})
		}
	})
	goNBD := "nbd://" + ln.Addr().String() + "/disk"

	if out := mustRun(t, "nbdinfo", "--size", goNBD); out != "4194304\n" {
		t.Errorf("nbdinfo --size via go-nbd: %q", out)
	}
	mustRun(t, "qemu-io", "-f", "raw", goNBD, "-c", "write -P 0x42 1048000 1048576", "-c", "read -P 0x42 1048000 1048576")
	if !bytes.Equal(b.bytes(1048000, 1<<20), bytes.Repeat([]byte{0x42}, 1<<20)) {
		t.Fatal("write through go-nbd did not reach the backend")
	}

	ours := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: b}}})
	mustRun(t, "qemu-io", "-f", "raw", ours.uri("disk"), "-c", "read -P 0x42 1048000 1048576", "-c", "read -P 0 0 1048000")
}
