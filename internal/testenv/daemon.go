package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BuildObjbacker builds the objbacker binary from the module at root (a
// path from the test's package directory: "..", "../..") into a temporary
// directory, and returns its path. It builds without -race, as a user
// would run it.
func BuildObjbacker(t testing.TB, root string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "objbacker")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Command(t, "go"), "build", "-o", bin, ".")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreeAddr returns "127.0.0.1:PORT" for a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePort(t))
}

// servingLine is what serve logs, with --log-format json, once every
// export is open and clients are served.
var servingLine = []byte(`"msg":"serving"`)

// tailLines is how much of a daemon's log a failure shows.
const tailLines = 40

// Daemon is a long-running process a test spawned, `objbacker serve` as a
// rule, with its stdout and stderr in a log file. It is SIGKILLed when the
// test ends if it still runs, and with the test binary if that dies first
// (Pdeathsig).
type Daemon struct {
	Name string // names it in failures
	Log  string // the path of its log

	cmd    *exec.Cmd
	exited chan struct{}
}

// SpawnDaemon starts bin with args, its output going to name.log in the
// test's artifact directory, and returns without waiting for it to serve
// (see WaitServing, StartDaemon). env holds variables set on top of the
// test process's environment.
func SpawnDaemon(t testing.TB, name, bin string, args, env []string) *Daemon {
	t.Helper()
	d := &Daemon{Name: name, Log: filepath.Join(t.ArtifactDir(), name+".log"), exited: make(chan struct{})}
	logFile, err := os.Create(d.Log)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	d.cmd = exec.Command(bin, args...)
	if len(env) > 0 {
		d.cmd.Env = append(os.Environ(), env...)
	}
	d.cmd.Stdout, d.cmd.Stderr = logFile, logFile
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(d.Kill)
	return d
}

// StartDaemon spawns a daemon (see SpawnDaemon) and waits up to a minute
// until it serves; one that exits first, or is slower, fails the test with
// its log tail.
func StartDaemon(t testing.TB, name, bin string, args, env []string) *Daemon {
	t.Helper()
	d := SpawnDaemon(t, name, bin, args, env)
	if err := d.WaitServing(t.Context(), time.Minute); err != nil {
		t.Fatal(err)
	}
	return d
}

// WaitServing waits until the daemon's log says it serves, and fails if it
// exits first or limit passes. A connection its address accepts says
// nothing: serve binds its address before it opens the exports, so that a
// taken one fails first.
func (d *Daemon) WaitServing(ctx context.Context, limit time.Duration) error {
	return d.WaitLogged(ctx, servingLine, "serving", limit)
}

// WaitLogged waits until the daemon's log holds line, and fails if it exits
// first or limit passes; what names the awaited state in the error.
func (d *Daemon) WaitLogged(ctx context.Context, line []byte, what string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		// Read after a look at the exit: the log of a daemon that has
		// exited is complete.
		exited := !d.Running()
		if bytes.Contains(d.LogBytes(), line) {
			return nil
		}
		if exited {
			return fmt.Errorf("%s exited (%s) before %s; log tail:\n%s", d.Name, d.cmd.ProcessState, what, d.Tail(tailLines))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not %s within %v; log tail:\n%s", d.Name, what, limit, d.Tail(tailLines))
		case <-d.exited:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Pid is the daemon's process ID.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Exited is closed once the daemon has exited.
func (d *Daemon) Exited() <-chan struct{} { return d.exited }

// Running reports whether the daemon has not exited yet.
func (d *Daemon) Running() bool {
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// State is how the daemon exited, nil while it runs.
func (d *Daemon) State() *os.ProcessState {
	if d.Running() {
		return nil
	}
	return d.cmd.ProcessState
}

// Signal sends sig to the daemon without waiting; an exited daemon gets
// nothing.
func (d *Daemon) Signal(sig os.Signal) {
	if d.Running() {
		d.cmd.Process.Signal(sig)
	}
}

// Kill SIGKILLs the daemon if it runs, and waits until it has exited.
func (d *Daemon) Kill() {
	d.Signal(syscall.SIGKILL)
	<-d.exited
}

// Wait waits for the daemon to exit without signalling it, for one already
// told to stop (objbacker takes a second SIGTERM or SIGINT to mean: exit at
// once, unflushed). It returns how the daemon exited and how long the wait
// took; one that outlives limit is killed and fails the test.
func (d *Daemon) Wait(t testing.TB, limit time.Duration) (*os.ProcessState, time.Duration) {
	t.Helper()
	return d.wait(t, limit, "")
}

// Stop sends sig and waits for the daemon to exit (see Wait).
func (d *Daemon) Stop(t testing.TB, sig os.Signal, limit time.Duration) (*os.ProcessState, time.Duration) {
	t.Helper()
	d.Signal(sig)
	return d.wait(t, limit, fmt.Sprintf(" of %v", sig))
}

func (d *Daemon) wait(t testing.TB, limit time.Duration, after string) (*os.ProcessState, time.Duration) {
	t.Helper()
	begin := time.Now()
	select {
	case <-d.exited:
	case <-time.After(limit):
		d.Kill()
		t.Fatalf("%s did not exit within %v%s; log tail:\n%s", d.Name, limit, after, d.Tail(tailLines))
	}
	return d.cmd.ProcessState, time.Since(begin)
}

// LogBytes is the daemon's log so far.
func (d *Daemon) LogBytes() []byte {
	b, _ := os.ReadFile(d.Log)
	return b
}

// Tail is the last n lines of the daemon's log.
func (d *Daemon) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(string(d.LogBytes()), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
