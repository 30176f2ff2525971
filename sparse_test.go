package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestSparseExport: `objbacker serve` answers base:allocation from its
// presence map. After a restart (nothing cached), nbdinfo --map shows the
// blocks written as data and the rest as holes without a GET, and nbdcopy
// and qemu-img convert copy the export exactly, each reading from the
// store only the blocks that hold data (the GETs counted by /metrics).
func TestSparseExport(t *testing.T) {
	const mib = 1 << 20
	for _, be := range backends {
		if !be.inspectable || be.name == "gcs" || be.name == "azure" {
			continue // the other clouds' paths are the same as s3's
		}
		t.Run(be.name, func(t *testing.T) {
			url := be.url(t, "sparse")
			s := startServe(t, "--size", "256M", "--export", "disk0="+url)
			// 1 MiB of data at blocks 3, 4, 100 and 255 (the last).
			blocks := []int64{3, 4, 100, 255}
			python(t, `
import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
for b in (3, 4, 100, 255):
    h.pwrite(bytes([b % 251 + 1]) * (1 << 20), b << 20)
h.flush()
h.shutdown()
`, s.uri("disk0"))
			s.stop(t)
			s = startServe(t, "--export", "disk0="+url)

			gets := s.metric(t, "objbacker_store_gets_total", "disk0")
			out := runOK(t, "nbdinfo", "--map", "--json", s.uri("disk0"))
			var extents []struct{ Offset, Length, Type int64 }
			if err := json.Unmarshal([]byte(out), &extents); err != nil {
				t.Fatalf("nbdinfo --map: %v\n%s", err, out)
			}
			var data int64
			for _, e := range extents {
				if e.Type&1 == 0 {
					data += e.Length
				}
			}
			if data != int64(len(blocks))*mib || len(extents) != 6 {
				t.Errorf("nbdinfo --map: %d bytes of data in %d extents, want %d in 6:\n%s", data, len(extents), len(blocks)*mib, out)
			}
			if n := s.metric(t, "objbacker_store_gets_total", "disk0") - gets; n != 0 {
				t.Errorf("nbdinfo --map made %d GETs", n)
			}

			want := func(blk int64) []byte {
				for _, b := range blocks {
					if b == blk {
						return bytes.Repeat([]byte{byte(b%251 + 1)}, mib)
					}
				}
				return make([]byte, mib)
			}
			dir := t.TempDir()
			for _, c := range []struct {
				name string
				args []string
			}{
				{"nbdcopy", []string{s.uri("disk0"), filepath.Join(dir, "nbdcopy.raw")}},
				{"qemu-img", []string{"convert", "-f", "raw", "-O", "raw", s.uri("disk0"), filepath.Join(dir, "qemu-img.raw")}},
			} {
				gets := s.metric(t, "objbacker_store_gets_total", "disk0")
				runOK(t, c.name, c.args...)
				if n := s.metric(t, "objbacker_store_gets_total", "disk0") - gets; c.name == "nbdcopy" && n != int64(len(blocks)) {
					// qemu-img runs second: the blocks are cached by then.
					t.Errorf("%s: %d GETs for %d blocks of data", c.name, n, len(blocks))
				}
				f, err := os.Open(c.args[len(c.args)-1])
				if err != nil {
					t.Fatal(err)
				}
				got := make([]byte, mib)
				for blk := int64(0); blk <= 256; blk++ {
					n, _ := io.ReadFull(f, got)
					if blk == 256 && n != 0 || blk < 256 && (n != mib || !bytes.Equal(got, want(blk))) {
						t.Errorf("%s: the copy differs from the export at block %d", c.name, blk)
						break
					}
				}
				f.Close()
			}
		})
	}
}
