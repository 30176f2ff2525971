package nbd

import (
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

type observed struct {
	export, cmd string
	bytes       uint32
	failed      bool
}

// observer collects what Server.Observe is told.
type observer struct {
	mu     sync.Mutex
	events []observed
}

func (o *observer) observe(export, cmd string, bytes uint32, d time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if d < 0 {
		panic("negative duration")
	}
	o.events = append(o.events, observed{export, cmd, bytes, err != nil})
}

// wait returns the events once there are n, sorted by command.
func (o *observer) wait(t *testing.T, n int) []observed {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		o.mu.Lock()
		got := slices.Clone(o.events)
		o.mu.Unlock()
		if len(got) >= n || time.Now().After(deadline) {
			slices.SortFunc(got, func(a, b observed) int {
				if a.export != b.export {
					return strings.Compare(a.export, b.export)
				}
				return strings.Compare(a.cmd, b.cmd)
			})
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Observe is told of every request that reaches the backend, once, with
// its command, length and outcome; requests refused before the backend are
// not observed.
func TestObserve(t *testing.T) {
	var o observer
	s := &Server{
		Exports: []*Export{
			{Name: "mem", Backend: newMemBackend(1 << 20)},
			{Name: "bad", Backend: failingBackend{Backend: newMemBackend(1 << 20), err: errors.New("broken")}},
		},
		Observe: o.observe,
	}
	ts := startServer(t, s)

	c := dialRaw(t, ts.addr)
	c.handshake("mem")
	c.request(cmdWrite, 0, 1, 0, 4096, make([]byte, 4096))
	c.request(cmdFlush, 0, 2, 0, 0, nil)
	c.request(cmdTrim, 0, 3, 0, 512, nil)
	c.request(cmdWriteZeroes, 0, 4, 4096, 1024, nil)
	c.request(cmdRead, 0, 5, 0, 8192, nil)
	c.request(cmdRead, 0, 6, 2<<20, 512, nil) // past the end: refused
	for range 6 {
		h := c.reply()
		if h.Handle == 5 {
			io.CopyN(io.Discard, c.r, 8192)
		}
		if want := h.Handle == 6; (h.Error != 0) != want {
			t.Errorf("request %d: error %d", h.Handle, h.Error)
		}
	}

	bad := dialRaw(t, ts.addr)
	bad.handshake("bad")
	bad.request(cmdRead, 0, 1, 0, 4096, nil)
	if h := bad.reply(); h.Error == 0 {
		t.Error("a failed read succeeded")
	}

	want := []observed{
		{"bad", "read", 4096, true},
		{"mem", "flush", 0, false},
		{"mem", "read", 8192, false},
		{"mem", "trim", 512, false},
		{"mem", "write", 4096, false},
		{"mem", "write_zeroes", 1024, false},
	}
	if got := o.wait(t, len(want)); !slices.Equal(got, want) {
		t.Errorf("observed\n%v\nwant\n%v", got, want)
	}
}
