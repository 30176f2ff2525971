package testenv

import (
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// shDaemon spawns sh -c script as a daemon.
func shDaemon(t *testing.T, name, script string) *Daemon {
	t.Helper()
	return SpawnDaemon(t, name, Command(t, "sh"), []string{"-c", script}, []string{"DAEMON_TEST=" + name})
}

func TestDaemonServesWhenItsLogSaysSo(t *testing.T) {
	d := shDaemon(t, "late", `printf '{"msg":"starting","env":"%s"}\n' "$DAEMON_TEST"; sleep 0.3; printf '{"msg":"serving"}\n'; exec sleep 60`)
	begin := time.Now()
	if err := d.WaitServing(t.Context(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took < 250*time.Millisecond {
		t.Errorf("served after %v, before its log said so", took)
	}
	if !d.Running() || d.State() != nil {
		t.Errorf("a serving daemon: Running %v, State %v", d.Running(), d.State())
	}
	if tail := d.Tail(1); tail != `{"msg":"serving"}` {
		t.Errorf("Tail(1) = %q", tail)
	}
	if tail := d.Tail(5); !strings.Contains(tail, `"env":"late"`) {
		t.Errorf("the environment did not reach the daemon: log %q", tail)
	}
	st, _ := d.Stop(t, syscall.SIGTERM, 10*time.Second)
	if ws := st.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("Stop(SIGTERM) gave %s", st)
	}
	if d.Running() || d.State() != st {
		t.Errorf("a stopped daemon: Running %v, State %v", d.Running(), d.State())
	}
	select {
	case <-d.Exited():
	default:
		t.Error("Exited not closed after Stop")
	}
}

func TestDaemonThatExitsBeforeServingFailsWithItsLog(t *testing.T) {
	d := shDaemon(t, "early", `echo 'bucket not found' >&2; exit 3`)
	err := d.WaitServing(t.Context(), 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "bucket not found") {
		t.Fatalf("WaitServing = %v; want the exit and the log tail", err)
	}
	if code := d.State().ExitCode(); code != 3 {
		t.Errorf("exit code %d, want 3", code)
	}
}

func TestDaemonNotServingInTime(t *testing.T) {
	d := shDaemon(t, "slow", `echo starting; exec sleep 60`)
	err := d.WaitServing(t.Context(), 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "not serving within") || !strings.Contains(err.Error(), "starting") {
		t.Fatalf("WaitServing = %v; want a timeout with the log tail", err)
	}
	if !d.Running() {
		t.Error("a slow daemon was stopped by WaitServing")
	}
}

// TestDaemonWaitSendsNothing: Wait waits for a daemon already told to stop
// and signals nothing more, so a daemon that exits at once on a second
// SIGTERM, as objbacker does, exits 0 after one.
func TestDaemonWaitSendsNothing(t *testing.T) {
	d := shDaemon(t, "term", `n=0
trap 'n=$((n+1)); [ $n -gt 1 ] && exit 1' TERM
printf '{"msg":"serving"}\n'
while [ $n -eq 0 ]; do sleep 0.05; done
sleep 0.3
exit 0`)
	if err := d.WaitServing(t.Context(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	d.Signal(syscall.SIGTERM)
	if st, took := d.Wait(t, 10*time.Second); st.ExitCode() != 0 || took < 200*time.Millisecond {
		t.Errorf("one SIGTERM then Wait: %s after %v, want exit 0 after the daemon's 0.3 s", st, took)
	}
	// A signal to an exited daemon goes nowhere.
	d.Signal(syscall.SIGTERM)
}

func TestDaemonKilledAtCleanup(t *testing.T) {
	var d *Daemon
	t.Run("spawn", func(t *testing.T) { d = shDaemon(t, "orphan", `exec sleep 60`) })
	select {
	case <-d.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon outlived its test")
	}
	if ws := d.State().Sys().(syscall.WaitStatus); ws.Signal() != syscall.SIGKILL {
		t.Errorf("ended with %s, not SIGKILL", d.State())
	}
}

func TestFreeAddr(t *testing.T) {
	addr := FreeAddr(t)
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("FreeAddr = %q", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("FreeAddr %s is not free: %v", addr, err)
	}
	ln.Close()
}

// TestObjbackerDaemon runs the real objbacker: serve on a file:// export
// serves and stops cleanly on SIGTERM; serve on a directory that does not
// exist exits 2 before serving, and WaitServing says why.
func TestObjbackerDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("builds objbacker")
	}
	bin := BuildObjbacker(t, filepath.Join("..", ".."))
	serve := func(name, dir string) *Daemon {
		return SpawnDaemon(t, name, bin, []string{"--log-format", "json", "serve", "--listen", FreeAddr(t),
			"--export", "d=file://" + dir, "--size", "16M"}, nil)
	}

	d := serve("objbacker", t.TempDir())
	if err := d.WaitServing(t.Context(), time.Minute); err != nil {
		t.Fatal(err)
	}
	if st, _ := d.Stop(t, syscall.SIGTERM, time.Minute); st.ExitCode() != 0 || !strings.Contains(d.Tail(tailLines), `"stopped cleanly"`) {
		t.Errorf("SIGTERM gave %s; log tail:\n%s", st, d.Tail(tailLines))
	}

	missing := filepath.Join(t.TempDir(), "missing")
	d = serve("objbacker-missing", missing)
	err := d.WaitServing(t.Context(), time.Minute)
	if err == nil || !strings.Contains(err.Error(), "exit status 2") || !strings.Contains(err.Error(), missing) {
		t.Fatalf("WaitServing on a missing directory = %v; want exit 2 naming it", err)
	}
	t.Logf("refused as it should be: %v", err)
}
