//go:build linux

package e2e

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/objbacker/objbacker/internal/testenv"
)

// guestScripts is the guest's /init and the files it sources from /e2e.
const guestScripts = "../scripts/vm/guest"

// vm is what boots a guest: QEMU, the kernel, and the initramfs with the
// guest scripts in it.
type vm struct {
	qemu, kernel, initrd string
}

// assetsDir is where scripts/vm/prepare.sh leaves the kernel and the
// initramfs: $OBJBACKER_VM_DIR, or $OBJBACKER_CACHE/vm/current.
func assetsDir() string {
	if dir := os.Getenv("OBJBACKER_VM_DIR"); dir != "" {
		return dir
	}
	cache := os.Getenv("OBJBACKER_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "objbacker")
	}
	return filepath.Join(cache, "vm", "current")
}

// prepareVM finds QEMU and the guest assets, or fails or skips the test
// (testenv.Missing), and packs the initramfs.
func prepareVM(t *testing.T) *vm {
	t.Helper()
	return prepareVMIn(t, assetsDir(), "scripts/vm/prepare.sh")
}

// prepareVMIn is prepareVM with the assets in dir, which maker makes.
func prepareVMIn(t *testing.T, dir, maker string) *vm {
	t.Helper()
	for _, name := range []string{"vmlinuz", "initrd.img"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			testenv.Missing(t, "guest %s: %v (%s makes it)", name, err, maker)
		}
	}
	v := &vm{
		qemu:   testenv.Command(t, "qemu-system-x86_64"),
		kernel: filepath.Join(dir, "vmlinuz"),
		initrd: filepath.Join(t.TempDir(), "initrd.img"),
	}
	if err := packInitrd(v.initrd, filepath.Join(dir, "initrd.img"), guestScripts); err != nil {
		t.Fatalf("packing the guest's initramfs: %v", err)
	}
	return v
}

// packInitrd writes the prepared initramfs followed by a second archive
// with the guest scripts, which the kernel unpacks over the first: the
// scripts change without a rebuild of the cached initramfs.
func packInitrd(out, base, scripts string) (err error) {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	b, err := os.Open(base)
	if err != nil {
		return err
	}
	defer b.Close()
	n, err := io.Copy(f, b)
	if err != nil {
		return err
	}
	// The kernel looks for the next archive at a 4-byte boundary.
	if _, err := f.Write(make([]byte, (4-n%4)%4)); err != nil {
		return err
	}
	entries, err := os.ReadDir(scripts)
	if err != nil {
		return err
	}
	c := &cpioWriter{w: f}
	c.add("e2e", cpioDir|0o755, nil)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(scripts, e.Name()))
		if err != nil {
			return err
		}
		if e.Name() == "init" {
			c.add("init", cpioFile|0o755, data)
		} else {
			c.add("e2e/"+e.Name(), cpioFile|0o644, data)
		}
	}
	return c.close()
}
