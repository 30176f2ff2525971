package nbd

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/objbacker/objbacker/internal/testenv"
)

// testServer is a Server running on a loopback port for one test.
type testServer struct {
	addr   string
	cancel context.CancelFunc
	done   chan error
}

// startServer serves s on 127.0.0.1 until the test ends, logging to the
// test; the cleanup fails the test if Serve errs or does not return.
func startServer(t testing.TB, s *Server) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if s.Log == nil {
		s.Log = testLogger(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{addr: ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		if err := ts.stop(); err != nil {
			t.Error(err)
		}
	})
	return ts
}

// stop cancels Serve and waits for it; calling it again returns nil.
func (ts *testServer) stop() error {
	ts.cancel()
	select {
	case err, ok := <-ts.done:
		if ok {
			close(ts.done)
		}
		return err
	case <-time.After(10 * time.Second):
		return errors.New("Serve did not return within 10s of cancellation")
	}
}

// uri names an export on the server; libnbd and qemu otherwise ask for "".
func (ts *testServer) uri(export string) string { return "nbd://" + ts.addr + "/" + export }

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// run executes a client program found by testenv and returns its combined
// output and exit code; it fails the test if the program cannot start or
// runs past a minute.
func run(t *testing.T, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Command(t, name), args...)
	// nbdsh runs "python3 -m nbd"; the python3 with the nbd module is
	// Debian's, which another python3 earlier in PATH would hide.
	cmd.Env = append(os.Environ(), "PATH=/usr/bin:"+os.Getenv("PATH"))
	cmd.Dir = t.TempDir() // for any state files the program leaves
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %v: timed out\n%s", name, args, out)
	}
	if err != nil {
		if exit, ok := err.(*exec.ExitError); ok {
			return string(out), exit.ExitCode()
		}
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out), 0
}

// mustRun is run that fails the test on a non-zero exit.
func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, code := run(t, name, args...)
	if code != 0 {
		t.Fatalf("%s %v: exit %d\n%s", name, args, code, out)
	}
	return out
}
