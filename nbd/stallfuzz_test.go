package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pojntfx/go-nbd/pkg/protocol"
)

// TestStallFuzzWithCanary runs many connections that send random valid,
// invalid, truncated and garbage frames, and WRITEs whose payloads stop
// halfway, while a canary client on each export keeps writing and reading
// its own region. The canary must be served throughout with bounded
// latency, every stalled payload must end with its connection closed by
// the server, and the server must stop cleanly afterwards.
func TestStallFuzzWithCanary(t *testing.T) {
	const (
		workers = 6
		// Connections stalled at once, at most; each waits in its own
		// goroutine while its worker goes on.
		maxStalled = 16
		runFor     = 2 * time.Second
		timeout    = 300 * time.Millisecond
		budget     = 256 << 10 // one stalled payload could hold all of it
		maxIO      = 256 << 10
		fuzzSize   = 4 << 20 // fuzzers write below, canaries above
		devSize    = 8 << 20
		// A stalled client waits this long for the server to close it.
		stallHold = 10 * timeout
		// The canary's bound: well under stallHold, so a canary that
		// waits for a stalled client to give up fails it.
		canaryBound = 1500 * time.Millisecond
	)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)

	var logs lockedBuffer
	a, b := newMemBackend(devSize), newMemBackend(devSize)
	ts := startServer(t, &Server{
		Exports: []*Export{
			{Name: "a", Backend: a, MaxBlockSize: maxIO, MaxBuffered: budget},
			{Name: "b", Backend: b, MaxBlockSize: maxIO, MaxBuffered: budget},
		},
		Log:            slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		MaxInflight:    8,
		PayloadTimeout: timeout,
	})

	var st fuzzStats
	stop := make(chan struct{})
	var wg sync.WaitGroup
	stalled := make(chan struct{}, maxStalled)
	for w := range workers {
		wg.Go(func() {
			f := &stallFuzzer{addr: ts.addr, r: rand.New(rand.NewPCG(seed, uint64(w))), st: &st,
				fuzzSize: fuzzSize, maxIO: maxIO, hold: stallHold, timeout: timeout,
				stalled: stalled, waiters: &wg}
			for {
				select {
				case <-stop:
					return
				default:
				}
				f.session()
			}
		})
	}

	canaries := []*canary{newCanary(t, ts.addr, "a", fuzzSize), newCanary(t, ts.addr, "b", fuzzSize)}
	var latencies []time.Duration
	start := time.Now()
	for time.Since(start) < runFor {
		for _, k := range canaries {
			t0 := time.Now()
			k.round(t)
			latencies = append(latencies, time.Since(t0))
		}
	}
	close(stop)
	wg.Wait()

	served, slowest := 0, time.Duration(0)
	for _, k := range canaries {
		served += k.served
		slowest = max(slowest, k.slowest)
	}
	slices.Sort(latencies)
	// Stopped first, so every connection has logged its end.
	if err := ts.stop(); err != nil {
		t.Fatal(err)
	}
	stalledLogged := strings.Count(logs.String(), `reason="payload stalled"`)
	t.Logf("%d connections, %d frames sent (%d valid, %d invalid, %d truncated, %d garbage), %d payloads stalled: "+
		"%d closed by the server at the timeout (%d logged), %d not closed within %v",
		st.conns.Load(), st.frames.Load(), st.valid.Load(), st.invalid.Load(), st.truncated.Load(), st.garbage.Load(),
		st.stalls.Load(), st.stallsClosed.Load(), stalledLogged, st.stallsOpen.Load(), stallHold)
	t.Logf("canaries: %d requests served in %v, slowest %v; write+read round: median %v, p99 %v",
		served, runFor, slowest, latencies[len(latencies)/2], latencies[len(latencies)*99/100])

	if slowest > canaryBound {
		t.Errorf("a canary request took %v; want under %v", slowest, canaryBound)
	}
	if st.stalls.Load() == 0 {
		t.Error("no payload stalled: the fuzzer did not test what it is for")
	}
	if n := st.stallsOpen.Load(); n > 0 {
		t.Errorf("%d stalled payloads were not ended by the server within %v (timeout %v)", n, stallHold, timeout)
	}
	if n := st.stallsEarly.Load(); n > 0 {
		t.Errorf("%d stalled connections were closed before the %v timeout", n, timeout)
	}
}

type fuzzStats struct {
	conns, frames, valid, invalid, truncated, garbage atomic.Int64
	stalls, stallsClosed, stallsOpen, stallsEarly     atomic.Int64
}

// stallFuzzer runs one random session after another, from one goroutine.
// Errors from the server end a session; they are expected, as the server
// may close a connection that broke the protocol.
type stallFuzzer struct {
	addr            string
	r               *rand.Rand
	st              *fuzzStats
	fuzzSize, maxIO int
	hold, timeout   time.Duration
	// stalled bounds the stalled connections of all fuzzers; waiters
	// tracks the goroutines that wait on them.
	stalled chan struct{}
	waiters *sync.WaitGroup
}

// session connects, agrees an export, and sends random frames until it
// stalls, truncates, sends garbage, or has sent enough.
func (f *stallFuzzer) session() {
	nc, err := fuzzDial(f.addr, []string{"a", "b"}[f.r.IntN(2)])
	if err != nil {
		return
	}
	waiting := false
	defer func() {
		if !waiting {
			nc.Close()
		}
	}()
	f.st.conns.Add(1)
	// Take every reply, so that no READ reply is left holding budget.
	closed := make(chan struct{})
	go func() {
		io.Copy(io.Discard, nc)
		close(closed)
	}()
	for range 1 + f.r.IntN(16) {
		nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
		f.st.frames.Add(1)
		switch p := f.r.IntN(100); {
		case p < 55:
			f.st.valid.Add(1)
			if _, err := nc.Write(f.valid()); err != nil {
				return
			}
		case p < 75:
			f.st.invalid.Add(1)
			if _, err := nc.Write(f.invalid()); err != nil {
				return
			}
		case p < 85:
			select {
			case f.stalled <- struct{}{}:
			default:
				continue // enough stalled already
			}
			waiting = f.stall(nc, closed)
			if !waiting {
				<-f.stalled
			}
			return
		case p < 95:
			f.st.truncated.Add(1)
			frame := f.valid()
			nc.Write(frame[:f.r.IntN(len(frame))])
			return
		default:
			f.st.garbage.Add(1)
			junk := make([]byte, 1+f.r.IntN(64))
			for i := range junk {
				junk[i] = byte(f.r.Uint32())
			}
			nc.Write(junk)
			return
		}
	}
}

// valid returns a frame the server serves: READ, WRITE (with its payload),
// FLUSH, TRIM or WRITE_ZEROES inside the fuzzers' region.
func (f *stallFuzzer) valid() []byte {
	length := uint32(512 * (1 + f.r.IntN(f.maxIO/512)))
	off := uint64(512 * f.r.IntN((f.fuzzSize-int(length))/512+1))
	var flags uint16
	if f.r.IntN(4) == 0 {
		flags = cmdFlagFUA
	}
	switch f.r.IntN(5) {
	case 0:
		return fuzzRequest(cmdRead, 0, off, length)
	case 1:
		return fuzzRequest(cmdFlush, 0, 0, 0)
	case 2:
		return fuzzRequest(cmdTrim, flags, off, length)
	case 3:
		return fuzzRequest(cmdWriteZeroes, flags, off, length)
	}
	return append(fuzzRequest(cmdWrite, flags, off, length), make([]byte, length)...)
}

// invalid returns a frame the server answers with an error: an unknown
// command or flag, or a range past the end or over the maximum. WRITEs
// carry their payloads, which the server reads and drops.
func (f *stallFuzzer) invalid() []byte {
	length := uint32(512 * (1 + f.r.IntN(f.maxIO/512)))
	switch f.r.IntN(4) {
	case 0:
		return fuzzRequest(uint16(7+f.r.IntN(100)), 0, 0, length)
	case 1:
		return fuzzRequest(cmdRead, 1<<(2+f.r.IntN(14)), 0, length)
	case 2:
		return fuzzRequest(cmdRead, 0, 0, uint32(f.maxIO+512))
	}
	return append(fuzzRequest(cmdWrite, 0, 1<<40, length), make([]byte, length)...)
}

// stall declares a WRITE, valid or past the end, sends part of its
// payload and, in a goroutine of its own, waits with the connection open
// for the server to close it; then it closes nc and frees its place in
// f.stalled. It reports whether it started waiting.
func (f *stallFuzzer) stall(nc net.Conn, closed <-chan struct{}) bool {
	length := 512 * (1 + f.r.IntN(f.maxIO/512))
	off := uint64(512 * f.r.IntN((f.fuzzSize-length)/512+1))
	if f.r.IntN(4) == 0 {
		off = 1 << 40 // rejected: its payload is read to be dropped
	}
	frame := append(fuzzRequest(cmdWrite, 0, off, uint32(length)), make([]byte, f.r.IntN(length))...)
	// Before the write: the server may see the last byte, and start
	// timing, before Write returns here.
	sent := time.Now()
	if _, err := nc.Write(frame); err != nil {
		return false
	}
	f.st.stalls.Add(1)
	f.waiters.Go(func() {
		defer func() { <-f.stalled }()
		defer nc.Close()
		select {
		case <-closed:
			if time.Since(sent) < f.timeout {
				f.st.stallsEarly.Add(1)
			}
			f.st.stallsClosed.Add(1)
		case <-time.After(f.hold):
			f.st.stallsOpen.Add(1)
		}
	})
	return true
}

// fuzzDial connects and completes the handshake into export, returning
// errors instead of failing the test: it runs off the test goroutine.
func fuzzDial(addr, export string) (net.Conn, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := fuzzHandshake(nc, export); err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	return nc, nil
}

func fuzzHandshake(nc net.Conn, export string) error {
	greeting := make([]byte, 18)
	if _, err := io.ReadFull(nc, greeting); err != nil {
		return err
	}
	msg := binary.BigEndian.AppendUint32(nil, clientFlagFixedNewstyle|clientFlagNoZeroes)
	msg = append(msg, fuzzOption(optGo, goData(export, protocol.NEGOTIATION_TYPE_INFO_BLOCKSIZE))...)
	if _, err := nc.Write(msg); err != nil {
		return err
	}
	for {
		var h protocol.NegotiationReplyHeader
		if err := binary.Read(nc, binary.BigEndian, &h); err != nil {
			return err
		}
		if _, err := io.CopyN(io.Discard, nc, int64(h.Length)); err != nil {
			return err
		}
		switch {
		case h.Type == protocol.NEGOTIATION_TYPE_REPLY_ACK:
			return nil
		case h.Type&(1<<31) != 0:
			return fmt.Errorf("GO %q: error reply %#x", export, h.Type)
		case h.Type != protocol.NEGOTIATION_TYPE_REPLY_INFO:
			return errors.New("unexpected option reply")
		}
	}
}
