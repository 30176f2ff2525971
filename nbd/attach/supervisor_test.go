package attach

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// fakeSysfs makes /sys/block/nbdN/queue for the max_sectors_kb setting.
func fakeSysfs(t *testing.T, index int) string {
	root := t.TempDir()
	q := filepath.Join(root, "block", "nbd"+itoa(index), "queue")
	if err := os.MkdirAll(q, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(q, "max_hw_sectors_kb"), []byte("32768\n"), 0o644)
	os.WriteFile(filepath.Join(q, "max_sectors_kb"), []byte("128\n"), 0o644)
	os.WriteFile(filepath.Join(root, "block", "nbd"+itoa(index), "pid"), []byte("1\n"), 0o644)
	return root
}

func itoa(i int) string { return string(rune('0' + i)) }

type fixture struct {
	t      *testing.T
	d      *daemon
	fake   *fakeKernel
	s      *Supervisor
	sysfs  string
	cancel context.CancelFunc
	done   chan error
}

func attachFixture(t *testing.T, description string) *fixture {
	t.Helper()
	f := &fixture{t: t, d: startDaemon(t, description), sysfs: fakeSysfs(t, 5)}
	var k *Kernel
	f.fake, k = newFakeKernel(t)
	f.s = NewSupervisor(k, Options{
		Addr: f.d.addr, Export: "disk", Index: -1, Connections: 3,
		Timeout: 30 * time.Second, DeadConnTimeout: 120 * time.Second, MaxSectorsKB: 1024,
		Poll:    50 * time.Millisecond,
		Backoff: Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond, Jitter: 0.3},
		Log:     testLog(t), Sysfs: f.sysfs,
	})
	if err := f.s.Attach(t.Context()); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) run() {
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan error, 1)
	go func() { f.done <- f.s.Run(ctx, f.fake.linkDead) }()
	f.t.Cleanup(func() { cancel(); <-f.done })
}

// reconfigured waits until RECONFIGUREs have handed the kernel n sockets
// in all (connections may die, and be replaced, a few at a time), and
// checks that each named device 5.
func (f *fixture) reconfigured(n int) []fakeMsg {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		msgs := messagesOf(f.fake.messages(), cmdConnect, cmdReconfigure)
		socks := 0
		for _, m := range msgs[1:] {
			if m.cmd != cmdReconfigure || m.attrs[attrIndex] != 5 || m.socks == 0 {
				f.t.Fatalf("message %+v, want RECONFIGURE of nbd5 with sockets", m)
			}
			socks += m.socks
		}
		if socks >= n {
			if socks > n {
				f.t.Fatalf("%d sockets reconfigured, want %d: live connections were replaced", socks, n)
			}
			return msgs
		}
		select {
		case err := <-f.done:
			f.t.Fatalf("Run returned %v after %d sockets, want %d", err, socks, n)
		default:
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%d sockets reconfigured after 10 s, want %d: %+v", socks, n, msgs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAttachConnect(t *testing.T) {
	f := attachFixture(t, "objbacker test [incarnation=aa01 continues=none]")
	msgs := f.fake.messages()
	if len(msgs) != 1 || msgs[0].cmd != cmdConnect {
		t.Fatalf("messages %+v, want one CONNECT", msgs)
	}
	m := msgs[0]
	if _, ok := m.attrs[attrIndex]; ok {
		t.Errorf("CONNECT names a device; want the kernel to pick (no NBD_ATTR_INDEX)")
	}
	want := map[uint16]uint64{
		attrSizeBytes: 16 << 20, attrBlockSizeBytes: 4096, attrTimeout: 30, attrDeadConnTimeout: 120,
		attrServerFlags: uint64(FlagHasFlags | FlagSendFlush | FlagCanMultiConn), attrClientFlags: 0,
	}
	for a, v := range want {
		if got, ok := m.attrs[a]; !ok || got&v != v || (a != attrServerFlags && got != v) {
			t.Errorf("CONNECT attribute %d = %#x (present %v), want %#x", a, got, ok, v)
		}
	}
	if m.socks != 3 {
		t.Errorf("CONNECT with %d sockets, want 3", m.socks)
	}
	if f.s.Device() != "/dev/nbd5" || f.s.Incarnation() != "aa01" {
		t.Errorf("device %s incarnation %q", f.s.Device(), f.s.Incarnation())
	}
	if kb, _ := readInt(filepath.Join(f.sysfs, "block/nbd5/queue/max_sectors_kb")); kb != 1024 {
		t.Errorf("max_sectors_kb %d, want 1024", kb)
	}
}

func TestAttachNamedDevice(t *testing.T) {
	d := startDaemon(t, "x [incarnation=aa01 continues=none]")
	fake, k := newFakeKernel(t)
	s := NewSupervisor(k, Options{Addr: d.addr, Export: "disk", Index: 2, Connections: 1, Log: testLog(t), Sysfs: t.TempDir()})
	if err := s.Attach(t.Context()); err != nil {
		t.Fatal(err)
	}
	if m := fake.messages()[0]; m.attrs[attrIndex] != 2 || s.Device() != "/dev/nbd2" {
		t.Fatalf("CONNECT %+v, device %s", m, s.Device())
	}
}

// TestReconnectSameIncarnation: the connections die under the same daemon
// (a network cut): RECONFIGURE hands the device three new sockets.
func TestReconnectSameIncarnation(t *testing.T) {
	const desc = "objbacker test [incarnation=aa01 continues=none]"
	f := attachFixture(t, desc)
	f.run()
	f.d.restart(desc)
	f.reconfigured(3)
	if f.s.Incarnation() != "aa01" {
		t.Errorf("incarnation %q", f.s.Incarnation())
	}
	// The new sockets are watched: another cut is reconnected again.
	f.d.restart(desc)
	f.reconfigured(6)
	time.Sleep(200 * time.Millisecond)
	f.reconfigured(6)
}

// TestReconnectCleanRestart: a daemon that continues the attached one
// (clean stop, new daemon, maybe a new binary) is reconnected, and the
// next restart must continue the new incarnation.
func TestReconnectCleanRestart(t *testing.T) {
	f := attachFixture(t, "objbacker test [incarnation=aa01 continues=none]")
	f.run()
	// Down for a while first: the supervisor retries with backoff.
	f.d.stop()
	time.Sleep(300 * time.Millisecond)
	f.d.start("objbacker test [incarnation=bb02 continues=aa01]")
	f.reconfigured(3)
	if f.s.Incarnation() != "bb02" {
		t.Fatalf("incarnation %q, want bb02", f.s.Incarnation())
	}
	f.d.restart("objbacker test [incarnation=cc03 continues=bb02]")
	f.reconfigured(6)
	if f.s.Incarnation() != "cc03" {
		t.Fatalf("incarnation %q, want cc03", f.s.Incarnation())
	}
}

// TestLossyRestartNotReconnected: a daemon that crashed and was started
// again with --force continues an older token: no RECONFIGURE, and Run
// ends with ErrRefused.
func TestLossyRestartNotReconnected(t *testing.T) {
	for name, desc := range map[string]string{
		"lossy":      "objbacker test [incarnation=dd04 continues=0123]",
		"no bracket": "objbacker test",
	} {
		t.Run(name, func(t *testing.T) {
			f := attachFixture(t, "objbacker test [incarnation=aa01 continues=none]")
			f.run()
			f.d.restart(desc)
			f.refused(t)
		})
	}
}

// TestNoIncarnationNotReconnected: a device attached to a server that does
// not say its incarnation is not reconnected even to the same server.
func TestNoIncarnationNotReconnected(t *testing.T) {
	f := attachFixture(t, "objbacker test")
	f.run()
	f.d.restart("objbacker test")
	f.refused(t)
}

// refused requires Run to end with ErrRefused within 10 s of a restart,
// the device never reconfigured: CONNECT is its only message.
func (f *fixture) refused(t *testing.T) {
	t.Helper()
	select {
	case err := <-f.done:
		f.done <- err // for the cleanup
		if !errors.Is(err, ErrRefused) {
			t.Fatalf("Run: %v, want ErrRefused", err)
		}
		t.Logf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run still runs 10 s after the restart")
	}
	if msgs := messagesOf(f.fake.messages(), cmdConnect, cmdReconfigure); len(msgs) != 1 {
		t.Fatalf("messages %+v: the device was reconfigured", msgs)
	}
}

// TestDetachStopsSupervisor: after NBD_CMD_DISCONNECT the supervisor sees
// its connections die, finds the device unconfigured, and returns.
func TestDetachStopsSupervisor(t *testing.T) {
	f := attachFixture(t, "objbacker test [incarnation=aa01 continues=none]")
	f.run()
	if err := f.s.kernel.Disconnect(5); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-f.done:
		f.done <- err
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run still runs after the device was detached")
	}
	if msgs := messagesOf(f.fake.messages(), cmdReconfigure); len(msgs) != 0 {
		t.Fatalf("reconfigured a detached device: %+v", msgs)
	}
	if d := messagesOf(f.fake.messages(), cmdDisconnect); len(d) != 1 || d[0].attrs[attrIndex] != 5 {
		t.Fatalf("DISCONNECT %+v", d)
	}
}
