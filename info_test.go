package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/objbacker/objbacker/blockmap"
	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/filestore"
)

// info counts every object of a bucket, as one listing of the whole bucket
// does, though it lists the device's key ranges side by side: the blocks,
// beyond the device's end too, and the objects outside those ranges.
func TestInfoCountsEveryObject(t *testing.T) {
	url := fileURL(t, "counted")
	dir := strings.TrimPrefix(url, "file://")
	store, err := filestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// 2^20 blocks: 16 ranges of 4 hex digits at --parallel 4.
	d, err := blockmap.Open(t.Context(), blockmap.Config{Store: store, Geometry: blockmap.Geometry{Size: 4 << 30, BlockSize: 4096}})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	put := func(key string, size int) {
		t.Helper()
		path := filepath.Join(dir, filepath.FromSlash(key))
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for n := int64(0); n < 1<<20; n += 349 {
		put(blockmap.BlockKey(n), 1+int(n%7))
	}
	for _, key := range []string{"-", "0", "0000", "00000000-x", "0009~x", "000:", "000g", "00100000", "0:", "a", "s3backer-mounted", "zz/yy", "~"} {
		put(key, 3)
	}
	var blocks, bytes, other int64
	if err := store.List(t.Context(), "", "", func(info objstore.ObjectInfo) error {
		if _, ok := blockmap.ParseBlockKey(info.Key); ok {
			blocks, bytes = blocks+1, bytes+info.Size
		} else {
			other++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, "info", "--parallel", "4", url)
	if code != 0 {
		t.Fatalf("info: exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		fmt.Sprintf("blocks present: %d (%d bytes stored)\n", blocks, bytes),
		fmt.Sprintf("allocated:      %.2f%% of 1048576 blocks\n", 100*float64(blocks)/(1<<20)),
		fmt.Sprintf("other objects:  %d\n", other),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("info says\n%s\nwant %q", out, want)
		}
	}
	if code, _, stderr := runCLI(t, "info", "--parallel", "0", url); code != 2 || !strings.Contains(stderr, "--parallel 0") {
		t.Errorf("info --parallel 0: exit %d, %q; want a usage error", code, stderr)
	}
}
