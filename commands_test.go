package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/objbacker/objbacker/blockmap"
)

// TestMountMarkerCommands: a served bucket is marked; a second serve is
// refused (exit 2) until the marker is reset; info shows it.
func TestMountMarkerCommands(t *testing.T) {
	url := fileURL(t, "marked")
	s := startServe(t, "--size", "64M", "--export", "d="+url+"?hash_prefix=true")

	code, _, stderr := runCLI(t, "serve", "--listen", freeAddr(t), "--export", "d="+url)
	if code != 2 || !strings.Contains(stderr, "marked as mounted") || !strings.Contains(stderr, "reset-mounted") {
		t.Fatalf("second serve: exit %d, stderr %q", code, stderr)
	}
	code, out, _ := runCLI(t, "info", url)
	if code != 0 || !strings.Contains(out, "mounted:        yes") || !strings.Contains(out, "hash-prefixed") {
		t.Fatalf("info while served (exit %d):\n%s", code, out)
	}
	runOK(t, "qemu-io", "-f", "raw", s.uri("d"), "-c", "write -P 0x61 0 3M")
	s.stop(t)
	if code, out, _ := runCLI(t, "info", url); code != 0 || !strings.Contains(out, "mounted:        no") || !strings.Contains(out, "blocks present: 3") {
		t.Fatalf("info after a clean stop (exit %d):\n%s", code, out)
	}

	// A marker left behind, as by a crash: refused, then reset.
	s = startServe(t, "--export", "d="+url)
	code, out, _ = runCLI(t, "reset-mounted", url)
	if code != 0 || !strings.Contains(out, "removed the mount marker") {
		t.Fatalf("reset-mounted: exit %d: %s", code, out)
	}
	if code, out, _ := runCLI(t, "reset-mounted", url); code != 0 || !strings.Contains(out, "not marked") {
		t.Fatalf("reset-mounted twice: exit %d: %s", code, out)
	}
	s.stop(t)
}

func TestErase(t *testing.T) {
	url := fileURL(t, "erase")
	s := startServe(t, "--size", "64M", "--export", "d="+url)
	runOK(t, "qemu-io", "-f", "raw", s.uri("d"), "-c", "write -P 0x62 0 5M")

	if code, _, stderr := runCLI(t, "erase", url); code != 2 || !strings.Contains(stderr, "--yes") {
		t.Fatalf("erase without --yes: exit %d, %q", code, stderr)
	}
	if code, _, stderr := runCLI(t, "erase", "--yes", url); code != 2 || !strings.Contains(stderr, "marked as mounted") {
		t.Fatalf("erase of a served bucket: exit %d, %q", code, stderr)
	}
	s.stop(t)
	code, out, stderr := runCLI(t, "erase", "--yes", url)
	if code != 0 || !strings.Contains(out, "erased 5 blocks") || !strings.Contains(stderr, "erasing blocks: 5 (") {
		t.Fatalf("erase: exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
	if code, out, _ := runCLI(t, "info", url); code != 0 || !strings.Contains(out, "not recorded") || !strings.Contains(out, "blocks present: 0") {
		t.Fatalf("info after erase (exit %d):\n%s", code, out)
	}
}

// TestEraseHoldsTheMarker: erase marks the bucket while it runs, so that a
// daemon starting mid-erase is refused, and removes the mark when done.
func TestEraseHoldsTheMarker(t *testing.T) {
	url := fileURL(t, "erasing")
	dir := strings.TrimPrefix(url, "file://")
	for n := range int64(3000) {
		if err := os.WriteFile(filepath.Join(dir, blockmap.BlockKey(n)), []byte{1}, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan int, 1)
	go func() {
		code, _, _ := runCLI(t, "erase", "--yes", "--parallel", "1", url)
		done <- code
	}()
	marker := filepath.Join(dir, blockmap.MountMarkerKey)
	seen := false
	for !seen {
		select {
		case code := <-done:
			t.Fatalf("erase ended (exit %d) without the bucket ever being marked", code)
		default:
		}
		_, err := os.Stat(marker)
		seen = err == nil
	}
	if code, _, stderr := runCLI(t, "serve", "--listen", freeAddr(t), "--export", "d="+url); code != 2 || !strings.Contains(stderr, "marked as mounted") {
		t.Errorf("serve during an erase: exit %d, %q; want refused", code, stderr)
	}
	if code := <-done; code != 0 {
		t.Fatalf("erase: exit %d", code)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("the marker outlived the erase (%v)", err)
	}
}
