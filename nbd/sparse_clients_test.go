package nbd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/objbacker/objbacker/blockmap"
	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/memstore"
)

// Real clients against a blockmap.Device, the daemon's backend, over an
// in-memory store that counts its requests: they see the holes through
// base:allocation, and a copy reads only the blocks that hold data.

// sparseDevice is a device of size bytes in blocks of bs whose blocks
// dataBlocks hold data (the returned image), stored: the device is
// reopened with an empty cache, and counts holds its store requests
// from then on.
type sparseDevice struct {
	*blockmap.Device
	image  []byte // nil for a large device
	counts *objstore.Counts
}

func openSparseDevice(t testing.TB, size, bs int64, dataBlocks []int64, keepImage bool, latency time.Duration) *sparseDevice {
	t.Helper()
	mem := memstore.New()
	g := blockmap.Geometry{Size: size, BlockSize: bs}
	cfg := blockmap.Config{Store: mem, Geometry: g, CacheSize: 64 << 20, Parallel: 32, WriteDelay: time.Hour}
	d, err := blockmap.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var image []byte
	if keepImage {
		image = make([]byte, size)
	}
	for _, blk := range dataBlocks {
		p := pattern(int(bs), uint64(blk)+1)
		if _, err := d.WriteAt(p, blk*bs); err != nil {
			t.Fatal(err)
		}
		if image != nil {
			copy(image[blk*bs:], p)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	counts := new(objstore.Counts)
	cfg.Store = objstore.Counting(mem, counts)
	if latency > 0 {
		cfg.Store = objstore.Latency(cfg.Store, objstore.LatencyConfig{Latency: latency})
	}
	if d, err = blockmap.Open(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	counts.Gets.Store(0)
	counts.BytesRead.Store(0)
	return &sparseDevice{Device: d, image: image, counts: counts}
}

func serveDevice(t *testing.T, d *sparseDevice) *testServer {
	t.Helper()
	return startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: d.Device,
		PreferredBlockSize: uint32(d.Geometry().BlockSize)}}})
}

type mapExtent struct {
	Offset, Length int64
	Type           uint32
}

// TestNbdinfoMap: holes (absent blocks, a trimmed one) are hole,zero;
// stored blocks and a dirty one are data.
func TestNbdinfoMap(t *testing.T) {
	const mib = 1 << 20
	d := openSparseDevice(t, 64*mib, mib, []int64{1, 2, 10}, false, 0)
	if err := d.Trim(10*mib, mib); err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(make([]byte, 4096), 20*mib); err != nil { // dirty, not stored
		t.Fatal(err)
	}
	ts := serveDevice(t, d)
	out := mustRun(t, "nbdinfo", "--map", "--json", ts.uri("disk"))
	var got []mapExtent
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("nbdinfo --map --json: %v\n%s", err, out)
	}
	want := []mapExtent{{0, mib, 3}, {mib, 2 * mib, 0}, {3 * mib, 17 * mib, 3}, {20 * mib, mib, 0}, {21 * mib, 43 * mib, 3}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("nbdinfo --map: %v, want %v", got, want)
	}
	if n := d.counts.Gets.Load(); n != 0 {
		t.Errorf("nbdinfo --map made %d GETs", n)
	}
	// libnbd's own view, through nbdsh, with REQ_ONE.
	out = mustRun(t, "nbdsh", "--base-allocation", "-u", ts.uri("disk"), "-c",
		`h.block_status(8<<20, 1<<20, lambda m, o, e, err: print(m, o, e), nbd.CMD_FLAG_REQ_ONE)`)
	if strings.TrimSpace(out) != "base:allocation 1048576 [2097152, 0]" {
		t.Errorf("nbdsh block_status with REQ_ONE printed %q", out)
	}
}

// TestSparseCopies: nbdcopy and qemu-img convert copy a sparse export
// exactly, and read from the store only the blocks that hold data.
func TestSparseCopies(t *testing.T) {
	const mib = 1 << 20
	data := []int64{0, 3, 17, 18, 60, 127}
	dir := t.TempDir()
	var d *sparseDevice
	var ts *testServer
	for _, c := range []struct {
		name string
		args func(out string) []string
	}{
		{"nbdcopy", func(out string) []string { return []string{ts.uri("disk"), out} }},
		{"qemu-img", func(out string) []string { return []string{"convert", "-f", "raw", "-O", "raw", ts.uri("disk"), out} }},
	} {
		// Each copy from a device with nothing cached.
		d = openSparseDevice(t, 128*mib, mib, data, true, 0)
		ts = serveDevice(t, d)
		out := filepath.Join(dir, c.name+".raw")
		mustRun(t, c.name, c.args(out)...)
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, d.image) {
			t.Errorf("%s: the copy differs from the export", c.name)
		}
		gets, read := d.counts.Gets.Load(), d.counts.BytesRead.Load()
		t.Logf("%s: %d GETs, %d bytes read from the store for %d blocks of data", c.name, gets, read, len(data))
		if gets != int64(len(data)) || read != int64(len(data))*mib {
			t.Errorf("%s: %d GETs, %d bytes from the store; want %d and %d", c.name, gets, read, len(data), len(data)*mib)
		}
	}
	// qemu-img map sees the same holes.
	out := mustRun(t, "qemu-img", "map", "-f", "raw", "--output=json", ts.uri("disk"))
	var m []struct {
		Start, Length int64
		Data, Zero    bool
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("qemu-img map: %v\n%s", err, out)
	}
	var dataBytes int64
	for _, e := range m {
		if e.Data {
			dataBytes += e.Length
		}
	}
	if dataBytes != int64(len(data))*mib {
		t.Errorf("qemu-img map: %d bytes of data, want %d\n%s", dataBytes, len(data)*mib, out)
	}
}

// TestDeviceByteGranularAndFastZero: a client that went in with
// NBD_OPT_EXPORT_NAME writes and reads single bytes of the device, which
// takes only whole sectors; fast zero succeeds on whole blocks and holes,
// and is ENOTSUP, changing nothing, on part of a block with data.
func TestDeviceByteGranularAndFastZero(t *testing.T) {
	const mib = 1 << 20
	d := openSparseDevice(t, 16*mib, mib, []int64{2, 3}, true, 0)
	ts := serveDevice(t, d)
	c := dialRaw(t, ts.addr)
	c.write(clientFlagFixedNewstyle | clientFlagNoZeroes)
	c.option(optExportName, []byte("disk"))
	var info [10]byte
	c.read(info[:])
	flags := uint16(info[8])<<8 | uint16(info[9])
	if flags&flagSendCache == 0 || flags&flagSendFastZero == 0 {
		t.Errorf("transmission flags %#x: want CACHE and FAST_ZERO", flags)
	}
	model := d.image
	ok := func(cookie uint64, what string) {
		t.Helper()
		if h := c.reply(); h.Error != 0 || h.Handle != cookie {
			t.Fatalf("%s: %+v", what, h)
		}
	}
	for i, w := range []struct{ off, n int }{{1, 1}, {2*mib - 7, 20}, {3*mib + 511, 1025}, {5*mib + 3, 4093}} {
		p := pattern(w.n, uint64(i+50))
		c.request(cmdWrite, 0, uint64(i), uint64(w.off), uint32(w.n), p)
		ok(uint64(i), fmt.Sprintf("write [%d, +%d)", w.off, w.n))
		copy(model[w.off:], p)
	}
	c.request(cmdWriteZeroes, 0, 10, 3*mib-100, 300, nil)
	ok(10, "unaligned zero")
	clear(model[3*mib-100 : 3*mib+200])
	c.request(cmdCache, 0, 11, 0, 16*mib, nil)
	ok(11, "CACHE")
	for i, z := range []struct {
		off, n uint32
		want   uint32
	}{{8 * mib, 2 * mib, 0}, {10*mib + 5, 100, 0}, {2*mib + 512, 512, errENOTSUP}} {
		c.request(cmdWriteZeroes, cmdFlagFastZero, uint64(20+i), uint64(z.off), z.n, nil)
		if h := c.reply(); h.Error != z.want {
			t.Errorf("fast zero [%d, +%d): error %d, want %d", z.off, z.n, h.Error, z.want)
		}
		if z.want == 0 {
			clear(model[z.off : z.off+z.n])
		}
	}
	c.request(cmdRead, 0, 30, 0, 16*mib-1, nil)
	ok(30, "read")
	got := make([]byte, 16*mib-1)
	if c.read(got); !bytes.Equal(got, model[:16*mib-1]) {
		t.Error("the device reads back other bytes than were written")
	}
}
