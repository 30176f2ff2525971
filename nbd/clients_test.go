package nbd

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestQemuIOUnalignedPatterns(t *testing.T) {
	b := newMemBackend(8 << 20)
	ts := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: b, PreferredBlockSize: 1 << 20}}})

	// Unaligned writes across 1 MiB boundaries: qemu read-modify-writes
	// them in 512-byte units, the advertised minimum.
	writes := []struct {
		pattern     byte
		off, length int
	}{
		{0x33, 0, 513},
		{0x5a, 1<<20 - 1000, 4096},
		{0x11, 2<<20 - 1, 2},
		{0x77, 3<<20 + 12345, 1<<20 + 777},
	}
	args := []string{"-f", "raw", ts.uri("disk")}
	for _, w := range writes {
		args = append(args, "-c", fmt.Sprintf("write -P 0x%x %d %d", w.pattern, w.off, w.length))
	}
	for _, w := range writes {
		args = append(args, "-c", fmt.Sprintf("read -P 0x%x %d %d", w.pattern, w.off, w.length))
	}
	if out := mustRun(t, "qemu-io", args...); strings.Contains(out, "verification failed") {
		t.Fatalf("qemu-io:\n%s", out)
	}

	want := make([]byte, 8<<20)
	for _, w := range writes {
		copy(want[w.off:], bytes.Repeat([]byte{w.pattern}, w.length))
	}
	if got := b.bytes(0, len(want)); !bytes.Equal(got, want) {
		t.Fatal("backend content differs from the patterns qemu-io wrote (bytes around them must stay zero)")
	}
}

func TestQemuIOUnknownExport(t *testing.T) {
	ts := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: newMemBackend(1 << 20)}}})
	if out, code := run(t, "qemu-io", "-f", "raw", ts.uri("missing"), "-c", "read 0 512"); code == 0 {
		t.Fatalf("qemu-io on an unknown export succeeded:\n%s", out)
	}
}

func TestNbdcopyRoundTrip(t *testing.T) {
	const size = 64 << 20
	b := newMemBackend(size)
	ts := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: b, PreferredBlockSize: 1 << 20}}})

	data := make([]byte, size)
	rand.NewChaCha8([32]byte{1}).Read(data)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	if err := os.WriteFile(in, data, 0o600); err != nil {
		t.Fatal(err)
	}

	mustRun(t, "nbdcopy", "--flush", in, ts.uri("disk"))
	if !bytes.Equal(b.bytes(0, size), data) {
		t.Fatal("backend content differs from the copied file")
	}
	if b.syncs.Load() == 0 {
		t.Error("nbdcopy --flush did not reach Sync")
	}
	mustRun(t, "nbdcopy", ts.uri("disk"), out)
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("file copied back out differs from the original")
	}
}

func TestFioVerify(t *testing.T) {
	ts := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: newMemBackend(32 << 20)}}})
	for _, c := range []struct{ rw, bs, size string }{
		{"write", "1M", "16M"},
		{"randwrite", "1M", "16M"},
		{"write", "4k", "4M"},
		{"randwrite", "4k", "4M"},
	} {
		t.Run(c.rw+"-"+c.bs, func(t *testing.T) {
			mustRun(t, "fio", "--name=verify", "--ioengine=nbd", "--uri="+ts.uri("disk"),
				"--rw="+c.rw, "--bs="+c.bs, "--size="+c.size, "--iodepth=16",
				"--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0")
		})
	}
}
