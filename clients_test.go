package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/objbacker/objbacker/blockmap"
	"github.com/objbacker/objbacker/internal/testenv"
	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/storeurl"
)

// backend is a kind of store the client tests run on.
type backend struct {
	name string
	// url returns a fresh, empty store URL.
	url func(t *testing.T, sub string) string
	// inspectable: the test can open the URL itself to look at objects
	// (not mem://, which lives inside the server).
	inspectable bool
	// volatile: the device keeps its blocks in its own memory and stores
	// none (mem://, blockmap.Config.Volatile).
	volatile bool
}

var backends = []backend{
	{"mem", func(*testing.T, string) string { return "mem://" }, false, true},
	{"file", func(t *testing.T, sub string) string { return fileURL(t, sub) }, true, false},
	{"s3", func(t *testing.T, sub string) string { return testenv.S3URL(t, sub) }, true, false},
	{"gcs", func(t *testing.T, sub string) string { return testenv.GCSURL(t, sub) }, true, false},
	{"azure", func(t *testing.T, sub string) string { return testenv.AzureURL(t, sub) }, true, false},
}

// TestClients drives `objbacker serve` with the real NBD clients on every
// store: nbdinfo, qemu-io, nbdcopy, libnbd (nbdsh) and fio.
func TestClients(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			url0, url1 := be.url(t, "vol0"), be.url(t, "vol1")
			s := startServe(t, "--size", "512M", "--export", "disk0="+url0, "--export", "disk1="+url1)
			t.Run("nbdinfo-list", func(t *testing.T) { testList(t, s) })
			t.Run("qemu-io-unaligned", func(t *testing.T) { testQemuIO(t, s) })
			t.Run("nbdcopy-256M", func(t *testing.T) { testNbdcopy(t, s) })
			t.Run("flush-trim-zero", func(t *testing.T) {
				var inspect objstore.Store
				if be.inspectable {
					inspect = openStore(t, url1)
				}
				testFlushTrimZero(t, s, be, inspect)
			})
			t.Run("one-put-per-block", func(t *testing.T) { testOnePut(t, s, be) })
			t.Run("fio-verify", func(t *testing.T) { testFio(t, s) })
		})
	}
}

func openStore(t *testing.T, url string) objstore.Store {
	t.Helper()
	st, err := storeurl.Open(t.Context(), url, storeurl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func testList(t *testing.T, s *server) {
	out := runOK(t, "nbdinfo", "--list", "--json", "nbd://"+s.addr)
	var list struct {
		Exports []struct {
			Name string `json:"export-name"`
			Size int64  `json:"export-size"`
		} `json:"exports"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("nbdinfo --json: %v\n%s", err, out)
	}
	got := map[string]int64{}
	for _, e := range list.Exports {
		got[e.Name] = e.Size
	}
	if len(got) != 2 || got["disk0"] != 512<<20 || got["disk1"] != 512<<20 {
		t.Fatalf("nbdinfo --list shows %v, want disk0 and disk1 of 512 MiB", got)
	}
	for _, cap := range []string{"flush", "fua", "trim", "zero", "multi-conn"} {
		if err := command(t, "nbdinfo", "--can", cap, s.uri("disk0")).Run(); err != nil {
			t.Errorf("nbdinfo --can %s: %v", cap, err)
		}
	}
}

func testQemuIO(t *testing.T, s *server) {
	// Offsets straddle 1 MiB block boundaries and are not sector-aligned;
	// qemu's NBD client does the sub-sector read-modify-write itself.
	writes := []struct {
		pattern     string
		off, length int64
	}{
		{"0x5a", 1048000, 4096},
		{"0x11", 3<<20 - 77, 300000},
		{"0xc3", 5<<20 + 4096, 2 << 20},
		{"0x7e", 10<<20 - 512, 1024},
	}
	var args []string
	for _, w := range writes {
		args = append(args, "-c", fmt.Sprintf("write -P %s %d %d", w.pattern, w.off, w.length))
	}
	for _, w := range writes {
		args = append(args, "-c", fmt.Sprintf("read -P %s %d %d", w.pattern, w.off, w.length))
	}
	// Bytes next to the writes were never written: zeros.
	args = append(args, "-c", "read -P 0 1047000 1000", "-c", "read -P 0 10486272 512")
	runOK(t, "qemu-io", append([]string{"-f", "raw", s.uri("disk0")}, args...)...)

	// And again from a new connection: the data is served, not remembered
	// by the client.
	var check []string
	for _, w := range writes {
		check = append(check, "-c", fmt.Sprintf("read -P %s %d %d", w.pattern, w.off, w.length))
	}
	runOK(t, "qemu-io", append([]string{"-f", "raw", "-r", s.uri("disk0")}, check...)...)
}

func testNbdcopy(t *testing.T, s *server) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.bin"), filepath.Join(dir, "out.bin")
	data := make([]byte, 256<<20)
	rand.Read(data)
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	runOK(t, "nbdcopy", "--flush", in, s.uri("disk0"))
	runOK(t, "nbdcopy", s.uri("disk0"), out)
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 512<<20 || !bytes.Equal(got[:len(data)], data) {
		t.Fatal("nbdcopy round trip: the first 256 MiB differ from what was copied in")
	}
	if !isZeros(got[len(data):]) {
		t.Fatal("nbdcopy round trip: the never-written half is not zeros")
	}
}

func isZeros(b []byte) bool { return bytes.Count(b, []byte{0}) == len(b) }

// testFlushTrimZero checks FLUSH, TRIM and WRITE_ZEROES through libnbd, and
// that whole-block trims and zeroes delete the objects.
func testFlushTrimZero(t *testing.T, s *server, be backend, inspect objstore.Store) {
	const script = `
import sys, nbd, os
h = nbd.NBD()
h.connect_uri(sys.argv[1])
M = 1 << 20
data = os.urandom(6 * M)
h.pwrite(data, 0)
h.flush()
print("flushed")
# trim blocks 1-2 whole, zero block 4 whole, zero half of block 5
h.trim(2 * M, M)
h.zero(M, 4 * M)
h.zero(M // 2, 5 * M)
h.flush()
got = h.pread(6 * M, 0)
want = data[:M] + bytes(2 * M) + data[3 * M:4 * M] + bytes(M + M // 2) + data[5 * M + M // 2:]
assert got == want, "read after trim/zero differs"
# sub-block trim of a stored block reads back zeros too
h.trim(4096, 8192)
h.flush()
assert h.pread(4096, 8192) == bytes(4096), "partial trim not zero"
h.shutdown()
print("ok")
`
	present := s.metric(t, "objbacker_blocks_present", "disk1")
	out := python(t, script, s.uri("disk1"))
	if !strings.Contains(out, "ok") {
		t.Fatalf("script output: %s", out)
	}
	// 6 blocks were written, 3 of them trimmed or zeroed whole; a volatile
	// device stores none.
	want := int64(3)
	if be.volatile {
		want = 0
	}
	if got := s.metric(t, "objbacker_blocks_present", "disk1") - present; got != want {
		t.Errorf("blocks present grew by %d, want %d", got, want)
	}
	if inspect == nil {
		return
	}
	for blk, want := range []bool{true, false, false, true, false, true} {
		_, err := inspect.Stat(t.Context(), blockmap.BlockKey(int64(blk)))
		if got := err == nil; got != want {
			t.Errorf("block %d: object present=%v, want %v (err %v)", blk, got, want, err)
		}
		if err != nil && !errors.Is(err, objstore.ErrNotFound) {
			t.Fatal(err)
		}
	}
}

// testOnePut writes one fresh block as eight 128 KiB requests, the most
// the Linux NBD client sends, then flushes: the store must see one PUT, or
// none from a volatile device.
func testOnePut(t *testing.T, s *server, be backend) {
	const script = `
import sys, nbd, os
h = nbd.NBD()
h.connect_uri(sys.argv[1])
M = 1 << 20
off = 100 * M
for i in range(8):
    h.pwrite(os.urandom(128 << 10), off + i * (128 << 10))
h.flush()
h.shutdown()
`
	puts := s.metric(t, "objbacker_store_puts_total", "disk1")
	python(t, script, s.uri("disk1"))
	want := int64(1)
	if be.volatile {
		want = 0
	}
	if got := s.metric(t, "objbacker_store_puts_total", "disk1") - puts; got != want {
		t.Fatalf("8 x 128 KiB writes into one block + FLUSH made %d PUTs, want %d", got, want)
	}
}

func testFio(t *testing.T, s *server) {
	for _, rw := range []string{"write", "randwrite"} {
		out := runOK(t, "fio", "--name=verify-"+rw, "--ioengine=nbd", "--uri="+s.uri("disk1"),
			"--rw="+rw, "--bs=64k", "--iodepth=8", "--numjobs=2", "--size=32M", "--offset=200M",
			"--offset_increment=32M", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1",
			"--group_reporting", "--output-format=json", "--verify_state_save=0")
		if !strings.Contains(out, `"error" : 0`) {
			t.Fatalf("fio %s verify did not report success:\n%s", rw, out)
		}
	}
}
