package main

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSecondSignalExits: the first signal stops the daemon; a second one
// while it flushes exits at once with status 1 and one line saying that
// unflushed writes may be lost.
func TestSecondSignalExits(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	exited := make(chan int, 1)
	var stderr syncBuffer
	ctx, stop := stopOn(t.Context(), sigs, &stderr, func(code int) { exited <- code })
	defer stop()
	sigs <- os.Interrupt
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the first signal did not stop the daemon")
	}
	select {
	case code := <-exited:
		t.Fatalf("exited (%d) on the first signal", code)
	case <-time.After(100 * time.Millisecond):
	}
	sigs <- syscall.SIGTERM
	select {
	case code := <-exited:
		line := strings.TrimSpace(stderr.String())
		if code != 1 || strings.Contains(line, "\n") || !strings.Contains(line, "may be lost") {
			t.Fatalf("exit %d, stderr %q; want 1 and one line saying writes may be lost", code, line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a second signal during the stop did not exit")
	}
}
