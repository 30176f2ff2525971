package kernel_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/objbacker/objbacker/kernel"
	"github.com/objbacker/objbacker/kernel/kerneltest"
)

// TestGracefulShutdown: cancelling stops reading, lets the request in the
// backend finish and reply, syncs after it, sends a BYE with status 0 for
// every export and closes the device.
func TestGracefulShutdown(t *testing.T) {
	a, b := newMemBackend(1<<20), newMemBackend(1<<20)
	release, held := make(chan struct{}), make(chan struct{})
	a.hook = func(op string, off int64) {
		if op == "write" {
			close(held)
			<-release
		}
	}
	d := startDaemon(t, &kernel.Server{Exports: []*kernel.Export{{Name: "a", Backend: a}, {Name: "b", Backend: b}}})
	// Opened by the cleanup too, so a failing test does not leave the
	// daemon stuck in the backend.
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock)
	write, err := d.k.Send(writeReq(d.export(t, "a"), 0, 4096), pattern(4096, 1))
	if err != nil {
		t.Fatal(err)
	}
	<-held
	d.cancel()
	select {
	case err := <-d.done:
		t.Fatalf("Serve returned (%v) with a request in the backend", err)
	case <-time.After(100 * time.Millisecond):
	}
	unblock()
	if r := <-write; r.Status != 0 {
		t.Fatalf("in-flight write: %v", r.Status)
	}
	if err := d.wait(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	<-d.k.Done()
	if err := d.k.Err(); err != nil {
		t.Fatal(err)
	}
	if a.syncs.Load() != 1 || a.syncRaced.Load() || b.syncs.Load() != 1 {
		t.Errorf("syncs a=%d (raced %v) b=%d, want one each after the write", a.syncs.Load(), a.syncRaced.Load(), b.syncs.Load())
	}
	checkByes(t, d.k, map[string]syscall.Errno{"a": 0, "b": 0})
}

// checkByes waits for the daemon to close its end, then checks that it
// sent exactly one BYE per export, with the given statuses.
func checkByes(t *testing.T, k *kerneltest.Kernel, want map[string]syscall.Errno) {
	t.Helper()
	select {
	case <-k.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the daemon did not close the channel")
	}
	byes := k.Byes()
	if len(byes) != len(want) {
		t.Fatalf("%d BYEs, want %d: %+v", len(byes), len(want), byes)
	}
	for name, status := range want {
		e, _ := k.Export(name)
		found := false
		for _, bye := range byes {
			if bye.Export == e.ID {
				found = true
				if bye.Status != status {
					t.Errorf("BYE for %s: status %v, want %v", name, bye.Status, status)
				}
			}
		}
		if !found {
			t.Errorf("no BYE for %s", name)
		}
	}
}

// TestShutdownLeavesUnadmittedRequests: a request read but still waiting
// for admission at shutdown gets no reply; the kernel keeps it for the
// next daemon.
func TestShutdownLeavesUnadmittedRequests(t *testing.T) {
	b := newMemBackend(1 << 20)
	release, held := make(chan struct{}), make(chan struct{})
	b.hook = func(op string, off int64) {
		if op == "write" {
			close(held)
			<-release
		}
	}
	d := startDaemon(t, &kernel.Server{Exports: []*kernel.Export{{Name: "disk", Backend: b}}, MaxInflight: 1})
	// Opened by the cleanup too, so a failing test does not leave the
	// daemon stuck in the backend.
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock)
	write, err := d.k.Send(writeReq(0, 0, 512), make([]byte, 512))
	if err != nil {
		t.Fatal(err)
	}
	<-held
	waiting, err := d.k.Send(readReq(0, 0, 512), nil)
	if err != nil {
		t.Fatal(err)
	}
	// The pauses put the reader in admission before the cancel, and the
	// cancel before the slot frees.
	time.Sleep(50 * time.Millisecond)
	d.cancel()
	time.Sleep(50 * time.Millisecond)
	unblock()
	if r := <-write; r.Status != 0 {
		t.Fatalf("write: %v", r.Status)
	}
	if err := d.wait(); err != nil {
		t.Fatal(err)
	}
	if r, ok := <-waiting; ok {
		t.Fatalf("the unadmitted read got a reply: %+v", r.Header)
	}
	checkByes(t, d.k, map[string]syscall.Errno{"disk": 0})
}

// TestCancelDuringHandshake: a kernel that never answers the HELLO does
// not keep Serve from stopping.
func TestCancelDuringHandshake(t *testing.T) {
	k, dev, err := kerneltest.Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	s := &kernel.Server{Exports: []*kernel.Export{{Name: "disk", Backend: newMemBackend(1 << 20)}}, Log: testLogger(t)}
	go func() { done <- s.Serve(ctx, dev) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancellation during the handshake")
	}
}

// deadlineless hides the device's deadlines, as a driver without poll
// support would.
type deadlineless struct{ io.ReadWriteCloser }

// TestCancelWithoutDeadlines: without read deadlines, cancelling closes the
// device to stop the reader; Serve still returns promptly.
func TestCancelWithoutDeadlines(t *testing.T) {
	k, dev, err := kerneltest.Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b := newMemBackend(1 << 20)
	s := &kernel.Server{Exports: []*kernel.Export{{Name: "disk", Backend: b}}, Log: testLogger(t)}
	go func() { done <- s.Serve(ctx, deadlineless{dev}) }()
	if _, err := k.Accept(testHello); err != nil {
		t.Fatal(err)
	}
	if r, err := k.Do(t.Context(), writeReq(0, 0, 512), make([]byte, 512)); err != nil || r.Status != 0 {
		t.Fatalf("write: %v %v", err, r.Status)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancellation")
	}
	if b.syncs.Load() != 1 {
		t.Errorf("%d syncs at shutdown, want 1", b.syncs.Load())
	}
}

// TestFinalSyncFailure: a failed final sync is reported by Serve and, in
// the export's BYE, to the kernel.
func TestFinalSyncFailure(t *testing.T) {
	bad, good := newMemBackend(1<<20), newMemBackend(1<<20)
	d := startDaemon(t, &kernel.Server{Exports: []*kernel.Export{{Name: "bad", Backend: bad}, {Name: "good", Backend: good}}})
	if r := d.do(t, writeReq(0, 0, 512), make([]byte, 512)); r.Status != 0 {
		t.Fatal(r.Status)
	}
	failure := error(errInjected)
	bad.syncErr.Store(&failure)
	err := d.stop()
	if !errors.Is(err, errInjected) || !strings.Contains(err.Error(), "final sync") {
		t.Fatalf("Serve returned %v, want the final sync failure", err)
	}
	<-d.k.Done()
	checkByes(t, d.k, map[string]syscall.Errno{"bad": syscall.EIO, "good": 0})
}

// TestKernelEndsChannel: end of stream from the kernel ends Serve with an
// error, after the usual shutdown.
func TestKernelEndsChannel(t *testing.T) {
	b := newMemBackend(1 << 20)
	d := startDaemon(t, &kernel.Server{Exports: []*kernel.Export{{Name: "disk", Backend: b}}})
	d.k.Close()
	if err := d.wait(); err == nil || !strings.Contains(err.Error(), "ended the channel") {
		t.Fatalf("Serve returned %v", err)
	}
	if b.syncs.Load() != 1 {
		t.Errorf("%d syncs, want 1", b.syncs.Load())
	}
}

// TestBadMagicEndsChannel: a message without the request magic cannot be
// answered (its id is not to be trusted), so the daemon closes the device.
func TestBadMagicEndsChannel(t *testing.T) {
	d := startDaemon(t, &kernel.Server{Exports: []*kernel.Export{{Name: "disk", Backend: newMemBackend(1 << 20)}}})
	garbage := kernel.AppendHeader(nil, kernel.Header{Magic: 0xdeadbeef, Version: kernel.Version, Op: kernel.OpRead, ID: 7, Length: 512})
	if err := d.k.WriteRaw(garbage); err != nil {
		t.Fatal(err)
	}
	if err := d.wait(); err == nil || !strings.Contains(err.Error(), "bad request magic 0xdeadbeef") {
		t.Fatalf("Serve returned %v", err)
	}
	<-d.k.Done()
	checkByes(t, d.k, map[string]syscall.Errno{"disk": 0})
}

// TestHelloRefused: the kernel's refusals reach the caller as errors that
// say what to do.
func TestHelloRefused(t *testing.T) {
	for _, tc := range []struct {
		status  syscall.Errno
		version uint16
		want    string
	}{
		{syscall.EPROTONOSUPPORT, 2, "speaks protocol version 2, this daemon version 1"},
		{syscall.EBUSY, 1, "already registered by another daemon"},
		{syscall.EINVAL, 1, "HELLO refused: invalid argument"},
	} {
		t.Run(tc.status.Error(), func(t *testing.T) {
			k, dev, err := kerneltest.Pair()
			if err != nil {
				t.Fatal(err)
			}
			defer k.Close()
			done := make(chan error, 1)
			s := &kernel.Server{Exports: []*kernel.Export{{Name: "disk", Backend: newMemBackend(1 << 20)}}, Log: testLogger(t)}
			go func() { done <- s.Serve(t.Context(), dev) }()
			if err := k.Refuse(tc.status, tc.version); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.status) {
					t.Fatalf("Serve returned %v, want %q", err, tc.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Serve did not return after a refused HELLO")
			}
		})
	}
}
