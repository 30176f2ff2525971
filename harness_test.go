package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/objbacker/objbacker/internal/testenv"
)

// TestMain keeps serve from setting a memory limit on the test process,
// which holds large buffers of its own (see memlimit_test.go for the limit).
func TestMain(m *testing.M) {
	os.Setenv("GOMEMLIMIT", "off")
	os.Exit(m.Run())
}

// syncBuffer collects a server's stderr while it runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// server is `objbacker serve` running in-process.
type server struct {
	addr, metrics string
	stderr        *syncBuffer
	cancel        context.CancelFunc
	done          chan int
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServe runs `objbacker serve --listen … args…` and waits until it
// serves. It is stopped (as by SIGTERM) at the end of the test.
func startServe(t *testing.T, args ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{addr: freeAddr(t), metrics: freeAddr(t), stderr: &syncBuffer{}, cancel: cancel, done: make(chan int, 1)}
	argv := append([]string{"objbacker", "serve", "--listen", s.addr, "--metrics", s.metrics}, args...)
	go func() { s.done <- run(ctx, argv, &syncBuffer{}, s.stderr) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case code := <-s.done:
			t.Fatalf("serve exited with %d before accepting clients:\n%s", code, s.stderr)
		default:
		}
		// The address is bound before the buckets are opened: ready is
		// when the log says so.
		if strings.Contains(s.stderr.String(), "msg=serving") {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("serve did not listen within 60 s:\n%s", s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop cancels the server as SIGTERM would and returns its exit code.
func (s *server) stop(t *testing.T) int {
	t.Helper()
	if s.done == nil {
		return 0
	}
	s.cancel()
	select {
	case code := <-s.done:
		s.done = nil
		if code != 0 {
			t.Errorf("serve exited with %d:\n%s", code, s.stderr)
		}
		return code
	case <-time.After(120 * time.Second):
		t.Fatalf("serve did not stop within 120 s:\n%s", s.stderr)
		return -1
	}
}

// fileURL returns the file:// URL of a fresh directory, which exists:
// serve creates none without --create-dir.
func fileURL(t *testing.T, sub string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), sub)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return "file://" + dir
}

func (s *server) uri(export string) string { return "nbd://" + s.addr + "/" + export }

// metric reads one export's metric from the server's /metrics page.
func (s *server) metric(t *testing.T, name, export string) int64 {
	t.Helper()
	out := runOK(t, "curl", "-sf", "http://"+s.metrics+"/metrics")
	prefix := fmt.Sprintf("%s{export=%q} ", name, export)
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			// Large values come as 1.048576e+06.
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s for %s: %q: %v", name, export, v, err)
			}
			return int64(f)
		}
	}
	t.Fatalf("metric %s for %s not found", name, export)
	return 0
}

// runOK runs a client program and fails the test if it fails.
func runOK(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := command(t, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func command(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	return exec.CommandContext(ctx, testenv.Command(t, name), args...)
}

// python runs a libnbd script with Debian's python3, which has the nbd
// module (nbdsh is a wrapper around it).
func python(t *testing.T, script string, args ...string) string {
	t.Helper()
	testenv.Command(t, "nbdsh")
	cmd := exec.Command("/usr/bin/python3", append([]string{"-c", script}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("libnbd script failed: %v\n%s", err, out)
	}
	return string(out)
}
