//go:build linux

package e2e

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// image creates a sparse raw disk image of size bytes.
func image(t *testing.T, name string, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	return path
}

// partitionedImage creates a sparse raw disk image with an MBR and one
// Linux partition from 1 MiB to the end. Given a whole disk, zpool create
// writes a GPT label and then waits 30 s for udev, which the guest lacks,
// to announce the partition; given a partition, it labels nothing.
func partitionedImage(t *testing.T, name string, size int64) string {
	t.Helper()
	path := image(t, name, size)
	const sector, first = 512, 2048
	mbr := make([]byte, sector)
	entry := mbr[446:462]
	entry[4] = 0x83 // Linux; the kernel ignores the CHS fields
	binary.LittleEndian.PutUint32(entry[8:], first)
	binary.LittleEndian.PutUint32(entry[12:], uint32(size/sector-first))
	mbr[510], mbr[511] = 0x55, 0xaa
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(mbr, 0); err != nil {
		t.Fatal(err)
	}
	return path
}
