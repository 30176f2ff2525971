package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/objbacker/objbacker/kernel"
	"github.com/objbacker/objbacker/kernel/kerneltest"
)

// TestVdevWithoutModule: without the character device, vdev says so in one
// line and exits with 2 before it opens any bucket.
func TestVdevWithoutModule(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "file")
	if err := os.WriteFile(regular, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	for _, tc := range []struct{ device, want string }{
		{filepath.Join(dir, "zfs_objbacker"), "does not exist: load the objbacker-patched ZFS module"},
		{regular, "is not a character device"},
	} {
		code, _, stderr := runCLI(t, "vdev", "--device", tc.device, "--size", "64M", "--export", "d=file://"+data)
		lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
		if code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], "objbacker: --device ") || !strings.Contains(lines[0], tc.want) {
			t.Errorf("vdev --device %s: exit %d, stderr:\n%s\nwant exit 2 and one line saying %q", tc.device, code, stderr, tc.want)
		}
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("the export's directory was created (%v): the bucket was opened", err)
	}
}

// vdevRun is `objbacker vdev` running in-process against a fake kernel
// listening on a Unix socket.
type vdevRun struct {
	k      *kerneltest.Kernel
	stderr *syncBuffer
	cancel context.CancelFunc
	done   chan int
}

func startVdev(t *testing.T, args ...string) *vdevRun {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "zfs_objbacker")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	v := &vdevRun{stderr: &syncBuffer{}, cancel: cancel, done: make(chan int, 1)}
	argv := append([]string{"objbacker", "vdev", "--device", sock}, args...)
	go func() { v.done <- run(ctx, argv, &syncBuffer{}, v.stderr) }()
	t.Cleanup(func() { v.stop(t) })

	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	select {
	case c := <-accepted:
		v.k = kerneltest.New(c)
		t.Cleanup(func() { v.k.Close() })
	case code := <-v.done:
		t.Fatalf("vdev exited with %d before connecting:\n%s", code, v.stderr)
	case <-time.After(60 * time.Second):
		t.Fatalf("vdev did not connect within 60s:\n%s", v.stderr)
	}
	if _, err := v.k.Accept(kernel.HelloReply{MaxIO: kernel.MaxIO, MaxInflight: 1000, TimeoutMS: 30000}); err != nil {
		t.Fatalf("HELLO: %v\n%s", err, v.stderr)
	}
	return v
}

// stop cancels the run as SIGTERM would and returns its exit code.
func (v *vdevRun) stop(t *testing.T) int {
	t.Helper()
	if v.done == nil {
		return 0
	}
	v.cancel()
	select {
	case code := <-v.done:
		v.done = nil
		return code
	case <-time.After(60 * time.Second):
		t.Fatalf("vdev did not stop within 60s:\n%s", v.stderr)
		return -1
	}
}

func (v *vdevRun) do(t *testing.T, h kernel.Header, payload []byte) kerneltest.Reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	r, err := v.k.Do(ctx, h, payload)
	if err != nil {
		t.Fatalf("%v: %v\n%s", h.Op, err, v.stderr)
	}
	if r.Status != 0 {
		t.Fatalf("%v: status %v\n%s", h.Op, r.Status, v.stderr)
	}
	return r
}

// TestVdevServesAndFlushesOnStop: vdev registers every export with its
// recorded geometry, serves requests, and on SIGTERM flushes what was never
// flushed, says so in the BYEs, and exits 0; a second run finds the data.
func TestVdevServesAndFlushesOnStop(t *testing.T) {
	exports := []string{"--export", "a=" + fileURL(t, "a"), "--export", "b=" + fileURL(t, "b")}
	v := startVdev(t, append([]string{"--size", "64M", "--block-size", "256K"}, exports...)...)
	a, ok := v.k.Export("a")
	if b, okb := v.k.Export("b"); !ok || !okb || a.Size != 64<<20 || a.BlockSize != 256<<10 || b.Flags != kernel.ExportTrim {
		t.Fatalf("registered exports: %+v %+v", a, b)
	}
	data := bytes.Repeat([]byte("objbacker vdev "), 4096)[:48<<10]
	v.do(t, kernel.Header{Op: kernel.OpWrite, Export: a.ID, Offset: 1 << 20, Length: uint32(len(data))}, data)
	if r := v.do(t, kernel.Header{Op: kernel.OpRead, Export: a.ID, Offset: 1 << 20, Length: uint32(len(data))}, nil); !bytes.Equal(r.Data, data) {
		t.Fatal("read back differs")
	}
	// No FLUSH: the partial block is still dirty when vdev stops.
	if code := v.stop(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, v.stderr)
	}
	<-v.k.Done()
	if byes := v.k.Byes(); len(byes) != 2 || byes[0].Status != 0 || byes[1].Status != 0 {
		t.Errorf("BYEs %+v, want two with status 0", byes)
	}
	if !strings.Contains(v.stderr.String(), "stopped cleanly") {
		t.Errorf("no clean stop logged:\n%s", v.stderr)
	}

	again := startVdev(t, exports...)
	a, _ = again.k.Export("a")
	if r := again.do(t, kernel.Header{Op: kernel.OpRead, Export: a.ID, Offset: 1 << 20, Length: uint32(len(data))}, nil); !bytes.Equal(r.Data, data) {
		t.Fatal("after a restart the data differs")
	}
	if code := again.stop(t); code != 0 {
		t.Fatalf("second run: exit %d:\n%s", code, again.stderr)
	}
}

// TestVdevRefusedHello: a module that refuses the registration makes vdev
// exit 1 with the reason, after closing its buckets.
func TestVdevRefusedHello(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "zfs_objbacker")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan int, 1)
	stderr := &syncBuffer{}
	go func() {
		done <- run(t.Context(), []string{"objbacker", "vdev", "--device", sock, "--size", "64M", "--export", "d=mem://"}, &syncBuffer{}, stderr)
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	k := kerneltest.New(c)
	defer k.Close()
	if err := k.Refuse(syscall.EBUSY, kernel.Version); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
		if last := lines[len(lines)-1]; code != 1 || !strings.Contains(last, "already registered by another daemon") {
			t.Errorf("exit %d, last line %q", code, last)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("vdev did not exit after a refused HELLO:\n%s", stderr)
	}
}
