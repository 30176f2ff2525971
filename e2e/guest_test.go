//go:build linux

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// disk is a raw image file that the guest sees as a virtio disk whose
// serial number names it (/sys/block/vdX/serial).
type disk struct {
	serial, path string
}

// boot is one guest run.
type boot struct {
	name   string   // names its files and log lines
	params []string // e2e.* kernel parameters for the guest's /init
	disks  []disk
	// limit bounds the run; past it QEMU is killed and the test fails.
	limit time.Duration
	// onSynced, if set, runs when the guest has synced its pool and waits
	// to be killed (end=sync); QEMU is killed after it.
	onSynced func()
	// onLine, if set, sees every line of the console as it comes; it must
	// not block.
	onLine func(line string)
}

// guest is a QEMU process and what it printed so far.
type guest struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	console string
	kill    func()
}

func (v *vm) start(t *testing.T, b boot) *guest {
	t.Helper()
	g := &guest{
		console: filepath.Join(t.ArtifactDir(), b.name+"-console.log"),
		exited:  make(chan struct{}),
	}
	// qemu64: TCG runs it about 18 % faster than -cpu max, whose AVX2 it
	// emulates slowly. panic=-1 with -no-reboot ends QEMU on a guest panic.
	args := []string{
		"-accel", "tcg,thread=multi", "-cpu", "qemu64", "-m", "2048", "-smp", "2",
		"-kernel", v.kernel, "-initrd", v.initrd,
		"-append", "console=ttyS0 panic=-1 loglevel=4 " + strings.Join(b.params, " "),
		"-display", "none", "-monitor", "none", "-serial", "file:" + g.console, "-no-reboot",
		"-nic", "user,model=virtio-net-pci", "-device", "virtio-rng-pci",
	}
	for i, d := range b.disks {
		args = append(args,
			"-drive", fmt.Sprintf("file=%s,if=none,id=disk%d,format=raw", d.path, i),
			"-device", fmt.Sprintf("virtio-blk-pci,drive=disk%d,serial=%s", i, d.serial))
	}
	out, err := os.Create(filepath.Join(t.ArtifactDir(), b.name+"-qemu.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	g.cmd = exec.Command(v.qemu, args...)
	g.cmd.Stdout = out
	g.cmd.Stderr = out
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("starting QEMU: %v", err)
	}
	go func() {
		g.cmd.Wait()
		close(g.exited)
	}()
	var once sync.Once
	g.kill = func() {
		once.Do(func() {
			g.cmd.Process.Kill()
			<-g.exited
		})
	}
	t.Cleanup(g.kill)
	return g
}

// run boots the guest, logs its "E2E|" lines, and returns when it powered
// off or was stopped. It fails the test, with the tail of the console,
// unless the guest reported PASS within b.limit.
func (v *vm) run(t *testing.T, b boot) {
	t.Helper()
	start := time.Now()
	g := v.start(t, b)
	failf := func(format string, args ...any) {
		t.Helper()
		g.kill()
		t.Fatalf("%s: %s after %.1f s; console %s, its tail:\n%s", b.name, fmt.Sprintf(format, args...),
			time.Since(start).Seconds(), g.console, tailFile(g.console, 80))
	}
	limit := time.NewTimer(b.limit)
	defer limit.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var (
		offset  int64
		partial []byte
		verdict string
	)
	for {
		exited := false
		select {
		case <-limit.C:
			failf("no verdict within the %v limit", b.limit)
		case <-g.exited:
			exited = true
		case <-tick.C:
		}
		var lines []string
		lines, offset, partial = readLines(g.console, offset, partial)
		for _, line := range lines {
			if b.onLine != nil {
				b.onLine(line)
			}
			switch {
			case strings.HasPrefix(line, "E2E| "):
				t.Logf("%s| %s", b.name, strings.TrimPrefix(line, "E2E| "))
			case strings.HasPrefix(line, "E2E-FAIL"):
				t.Logf("%s| %s", b.name, line)
			case strings.HasPrefix(line, "E2E-RESULT "):
				verdict = strings.TrimPrefix(line, "E2E-RESULT ")
			case line == "E2E-SYNCED" && b.onSynced != nil && strings.HasPrefix(verdict, "PASS"):
				t.Logf("%s: guest synced after %.1f s", b.name, time.Since(start).Seconds())
				b.onSynced()
				g.kill()
				t.Logf("%s: %s, then QEMU killed", b.name, verdict)
				return
			}
		}
		switch {
		case strings.HasPrefix(verdict, "FAIL"):
			failf("the guest reported %s", verdict)
		case verdict != "" && b.onSynced == nil:
			// The guest powers itself off after its verdict.
			select {
			case <-g.exited:
			case <-time.After(30 * time.Second):
				failf("the guest did not power off after %s", verdict)
			}
			t.Logf("%s: %s in %.1f s", b.name, verdict, time.Since(start).Seconds())
			return
		case exited:
			failf("QEMU exited (%s) without a verdict", g.cmd.ProcessState)
		}
	}
}

// readLines returns the complete lines added to path since offset.
func readLines(path string, offset int64, partial []byte) ([]string, int64, []byte) {
	f, err := os.Open(path)
	if err != nil {
		return nil, offset, partial
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var lines []string
	for {
		n, _ := f.ReadAt(buf, offset)
		if n == 0 {
			return lines, offset, partial
		}
		offset += int64(n)
		partial = append(partial, buf[:n]...)
		for {
			i := bytes.IndexByte(partial, '\n')
			if i < 0 {
				break
			}
			lines = append(lines, strings.TrimRight(string(partial[:i]), "\r"))
			partial = partial[i+1:]
		}
	}
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// guestDeadline is when a guest test must end: totalLimit from now, or a
// minute before go test's -timeout, so that a failure names the boot and
// its console log rather than ending in a panic with goroutine dumps.
func guestDeadline(t *testing.T) time.Time {
	deadline := time.Now().Add(totalLimit)
	if d, ok := t.Deadline(); ok && d.Add(-time.Minute).Before(deadline) {
		deadline = d.Add(-time.Minute)
	}
	return deadline
}

// logVerdict logs, once the test ends, "TAG PASS|FAIL: what, N s" for the
// CI log to grep; call it deferred, with the test's start.
func logVerdict(t *testing.T, tag string, start time.Time, what string) {
	t.Helper()
	verdict := "PASS"
	if t.Failed() {
		verdict = "FAIL"
	}
	t.Logf("%s %s: %s, %.0f s", tag, verdict, what, time.Since(start).Seconds())
}
