package faults

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/objbacker/objbacker/internal/testenv"
)

// unitSize is the writer's unit: every write covers whole units, and each
// unit it writes says which write it came from (writer.py).
const unitSize = 4096

var unitMagic = []byte("OBJBFLT1")

// unitBytes is what write gen puts in the unit at byte offset off: a
// 32-byte header (magic, offset, generation, zeros) and a filler hashed
// from it. writer.py's unit_bytes makes the same bytes.
func unitBytes(off, gen int64) []byte {
	u := make([]byte, 0, unitSize)
	u = append(u, unitMagic...)
	u = binary.LittleEndian.AppendUint64(u, uint64(off))
	u = binary.LittleEndian.AppendUint64(u, uint64(gen))
	u = append(u, make([]byte, 8)...)
	sum := sha256.Sum256(u)
	for len(u) < unitSize {
		u = append(u, sum[:]...)
	}
	return u
}

// decode names the write whose bytes the unit at off holds: its
// generation, 0 for zeros (never written, or trimmed), corrupt for bytes
// no write wrote there.
func decode(off int64, unit []byte) int64 {
	if isZero(unit) {
		return 0
	}
	if !bytes.HasPrefix(unit, unitMagic) {
		return corrupt
	}
	gotOff := int64(binary.LittleEndian.Uint64(unit[8:]))
	gen := int64(binary.LittleEndian.Uint64(unit[16:]))
	if gotOff != off || gen <= 0 || !bytes.Equal(unit, unitBytes(off, gen)) {
		return corrupt
	}
	return gen
}

const corrupt = -1

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// event is one line of writer.py's report.
type event struct {
	T    string  `json:"t"`
	ID   int64   `json:"id"`
	U    int     `json:"u"`
	N    int     `json:"n"`
	FUA  bool    `json:"fua"`
	Gens []int64 `json:"gens"`
	Msg  string  `json:"msg"`
}

// writer is a running writer.py connected to one daemon. Its events go to
// the ledger as they arrive.
type writer struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	events chan event
	ledger *ledger
	dead   bool
}

// python3 with the nbd module is Debian's (see scripts/test.sh's PATH
// note): nbdsh, its wrapper, shows that it is installed.
func startWriter(t *testing.T, l *ledger, uri string) *writer {
	t.Helper()
	testenv.Command(t, "nbdsh")
	cmd := exec.Command("/usr/bin/python3", "writer.py")
	cmd.Stderr = &tailWriter{}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting writer.py: %v", err)
	}
	w := &writer{cmd: cmd, stdin: stdin, events: make(chan event, 1024), ledger: l}
	go func() {
		defer close(w.events)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var e event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				e = event{T: "dead", Msg: fmt.Sprintf("unreadable event %q: %v", sc.Text(), err)}
			}
			w.events <- e
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	setup := map[string]any{"uri": uri, "gen_base": l.nextGen(), "units": l.units()}
	if err := w.do(t, setup, time.Minute); err != nil {
		t.Fatalf("writer.py: %v (stderr: %s)", err, cmd.Stderr)
	}
	if w.dead {
		t.Fatalf("writer.py could not connect to %s (stderr: %s)", uri, cmd.Stderr)
	}
	return w
}

// do sends one command and records its events until the writer says it is
// done or that its connection died (w.dead). An error means the writer
// itself failed or hung past limit.
func (w *writer) do(t *testing.T, cmd map[string]any, limit time.Duration) error {
	t.Helper()
	if w.dead {
		return nil
	}
	line, _ := json.Marshal(cmd)
	if _, err := w.stdin.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("sending %s: %w", line, err)
	}
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		select {
		case e, ok := <-w.events:
			if !ok {
				return fmt.Errorf("writer.py exited during %s", line)
			}
			switch e.T {
			case "done":
				return nil
			case "dead":
				w.dead = true
				w.ledger.fig.Add("disconnects", 1)
				return nil
			}
			w.ledger.record(e)
		case <-timer.C:
			return fmt.Errorf("%s: no answer within %v (%w)", line, limit, context.DeadlineExceeded)
		}
	}
}

// run is a random workload of ops requests.
func (w *writer) run(t *testing.T, wl workload, limit time.Duration) {
	t.Helper()
	if err := w.do(t, wl.command(), limit); err != nil {
		t.Fatal(err)
	}
}

// flush sends a FLUSH and reports whether it succeeded.
func (w *writer) flush(t *testing.T, limit time.Duration) bool {
	t.Helper()
	before := w.ledger.fig.Get("flush ok")
	if err := w.do(t, map[string]any{"cmd": "flush"}, limit); err != nil {
		t.Fatal(err)
	}
	return w.ledger.fig.Get("flush ok") > before
}

// quit disconnects cleanly, if the connection is still there.
func (w *writer) quit(t *testing.T) {
	t.Helper()
	if err := w.do(t, map[string]any{"cmd": "quit"}, time.Minute); err != nil {
		t.Fatal(err)
	}
}

// workload describes a random run of writer.py.
type workload struct {
	Ops        int     // requests, flushes included
	Seed       int64   // repeatable choices
	Depth      int     // requests in flight
	MaxUnits   int     // largest write or read, in units
	FUA        float64 // share of writes sent with FUA
	FlushEvery int     // a FLUSH after this many writes and reads (0: none)
	Read       float64 // share of reads
}

func (w workload) command() map[string]any {
	return map[string]any{"cmd": "run", "ops": w.Ops, "seed": w.Seed, "depth": w.Depth, "max_units": w.MaxUnits,
		"fua": w.FUA, "flush_every": w.FlushEvery, "read": w.Read}
}

// tailWriter keeps the last few KiB of a child's stderr, for messages.
type tailWriter struct {
	mu  sync.Mutex
	buf []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if len(w.buf) > 8<<10 {
		w.buf = w.buf[len(w.buf)-8<<10:]
	}
	return len(p), nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}
