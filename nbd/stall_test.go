package nbd

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// canary is a well-behaved client that writes a pattern and reads it back,
// one request at a time, recording how long each request took. It runs on
// the test goroutine (rawClient fails the test on any error).
type canary struct {
	c        *rawClient
	base     uint64 // its own region of the export
	served   int
	slowest  time.Duration
	deadline time.Duration // per request: a stuck server fails the test
}

const canaryIO = 64 << 10

func newCanary(t *testing.T, addr, export string, base uint64) *canary {
	c := dialRaw(t, addr)
	c.handshake(export)
	return &canary{c: c, base: base, deadline: 5 * time.Second}
}

// round writes then reads back one canaryIO block of its region.
func (k *canary) round(t *testing.T) {
	t.Helper()
	off := k.base + uint64(k.served%8)*canaryIO
	want := bytes.Repeat([]byte{byte(k.served + 1)}, canaryIO)
	k.timed(t, func() {
		k.c.request(cmdWrite, 0, uint64(k.served), off, canaryIO, want)
		if r := k.c.reply(); r.Error != 0 {
			t.Fatalf("canary write: %+v", r)
		}
	})
	got := make([]byte, canaryIO)
	k.timed(t, func() {
		k.c.request(cmdRead, 0, uint64(k.served), off, canaryIO, nil)
		if r := k.c.reply(); r.Error != 0 {
			t.Fatalf("canary read: %+v", r)
		}
		k.c.read(got)
	})
	if !bytes.Equal(got, want) {
		t.Fatalf("canary read back other data at %d", off)
	}
}

func (k *canary) timed(t *testing.T, f func()) {
	start := time.Now()
	k.c.nc.SetDeadline(start.Add(k.deadline))
	f()
	k.served++
	k.slowest = max(k.slowest, time.Since(start))
}

// lockedBuffer collects log output written from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// A client that declares a large WRITE, sends a little of it and then
// stops must hold nothing that clients of other connections and exports
// wait for; its payload times out and its connection is closed.
func TestStalledWritePayloadBlocksNoOne(t *testing.T) {
	const (
		timeout   = 1500 * time.Millisecond
		declared  = 8 << 20 // the whole default budget
		sent      = 1 << 10
		stallOff  = 4 << 20
		canaryFor = 750 * time.Millisecond
		// Under the timeout: before admission ignored unsent bytes, the
		// canaries waited for the stalled client to hang up.
		canaryBound = time.Second
	)
	var logs lockedBuffer
	a, b := newMemBackend(16<<20), newMemBackend(16<<20)
	ts := startServer(t, &Server{
		Exports:        []*Export{{Name: "a", Backend: a}, {Name: "b", Backend: b}},
		Log:            slog.New(slog.NewTextHandler(&logs, nil)),
		PayloadTimeout: timeout,
	})
	t.Cleanup(func() { t.Log("server log:\n" + logs.String()) })

	stalled := dialRaw(t, ts.addr)
	stalled.handshake("a")
	stalledAt := time.Now() // the server starts timing once it has the bytes
	stalled.request(cmdWrite, 0, 1, stallOff, declared, make([]byte, sent))

	// Canaries on the same export and on another, each its own connection.
	canaries := []*canary{newCanary(t, ts.addr, "a", 0), newCanary(t, ts.addr, "b", 0)}
	for time.Since(stalledAt) < canaryFor {
		for _, k := range canaries {
			k.round(t)
		}
	}
	for i, k := range canaries {
		t.Logf("canary %d: %d requests served while the payload stalled, slowest %v", i, k.served, k.slowest)
		if k.slowest > canaryBound {
			t.Errorf("canary %d: a request took %v with another client's payload stalled; want under %v", i, k.slowest, canaryBound)
		}
	}

	stalled.nc.SetDeadline(time.Now().Add(timeout + 10*time.Second))
	stalled.expectClosed()
	closedAfter := time.Since(stalledAt)
	t.Logf("stalled connection closed %v after its last byte (timeout %v)", closedAfter, timeout)
	if closedAfter < timeout {
		t.Errorf("stalled connection closed after %v, before the %v timeout", closedAfter, timeout)
	}

	// The partial payload never reached the backend.
	if !bytes.Equal(a.bytes(stallOff, declared), make([]byte, declared)) {
		t.Error("part of the stalled write was stored")
	}
	// Logged at Warn with the client's address: the server may close the
	// connection before it writes the line, so it is awaited a while.
	remote := "remote=" + stalled.nc.LocalAddr().String()
	found := false
	for deadline := time.Now().Add(5 * time.Second); !found && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "level=WARN") && strings.Contains(line, remote) && strings.Contains(line, "stalled") {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("no Warn line about the stalled payload with %s", remote)
	}
}

// The payload timeout counts time without progress, not the payload's
// whole time; it also ends a rejected WRITE whose payload stops, and a
// server stopping does not wait for it.
func TestPayloadTimeoutIsWithoutProgress(t *testing.T) {
	const timeout = 400 * time.Millisecond
	b := newMemBackend(1 << 20)
	ts := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: b}}, PayloadTimeout: timeout})

	// 64 KiB in 8 parts, one every timeout/4: twice the timeout in all.
	c := dialRaw(t, ts.addr)
	c.handshake("disk")
	want := bytes.Repeat([]byte{7}, 64<<10)
	c.request(cmdWrite, 0, 1, 0, uint32(len(want)), nil)
	for part := range slices.Chunk(want, len(want)/8) {
		time.Sleep(timeout / 4)
		c.write(part)
	}
	if r := c.reply(); r.Error != 0 {
		t.Fatalf("slow but steady write: %+v", r)
	}
	if !bytes.Equal(b.bytes(0, len(want)), want) {
		t.Fatal("slow but steady write not stored")
	}
	// Idle between requests for longer than the timeout: still served.
	time.Sleep(2 * timeout)
	c.request(cmdFlush, 0, 2, 0, 0, nil)
	if r := c.reply(); r.Error != 0 {
		t.Fatalf("flush after idling: %+v", r)
	}

	// A WRITE past the end is rejected, but its payload is still read;
	// when it stops, so does the connection.
	c.request(cmdWrite, 0, 3, 1<<20, 4096, make([]byte, 100))
	start := time.Now()
	c.expectClosed()
	if d := time.Since(start); d < timeout {
		t.Errorf("closed %v after a rejected payload stopped, before the %v timeout", d, timeout)
	}

	// Stopping the server ends a stalled payload at once, whatever the
	// timeout (here a minute).
	ts.stop()
	slow := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: b}}, PayloadTimeout: time.Minute})
	s := dialRaw(t, slow.addr)
	s.handshake("disk")
	s.request(cmdWrite, 0, 1, 0, 4096, make([]byte, 10))
	time.Sleep(100 * time.Millisecond) // the reader is waiting for the rest
	start = time.Now()
	if err := slow.stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stopping took %v with a payload stalled", d)
	}
	s.expectClosed()
}
