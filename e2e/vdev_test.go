//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/objbacker/objbacker/internal/testenv"
)

const (
	vdevExports = 3
	vdevMiB     = 64
	// The guest's daemon caches less than the default 256M per export:
	// three of them and ZFS share the guest's 2 GiB.
	vdevCache = "96M"
	// Under TCG a FLUSH that uploads a full cache takes tens of seconds;
	// the module's default of 30 s is meant for real hardware.
	vdevTimeoutMS = 120000
)

// vdevAssetsDir is where scripts/vm/prepare.sh leaves the guest with the
// objbacker-patched ZFS (scripts/vm/module.sh): $OBJBACKER_VM_VDEV_DIR, or
// $OBJBACKER_CACHE/vm/vdev.
func vdevAssetsDir() string {
	if dir := os.Getenv("OBJBACKER_VM_VDEV_DIR"); dir != "" {
		return dir
	}
	return filepath.Join(filepath.Dir(assetsDir()), "vdev")
}

// TestVdev runs the native vdev path in a QEMU guest: objbacker vdev runs
// in the guest on the patched module's /dev/zfs_objbacker and stores three
// exports in MinIO buckets on the host. The first boot makes a pool on
// objbacker:disk0..2, writes, exports, imports with -d objbacker:NAME,
// checks every checksum and scrubs. The second boot imports the same
// buckets through objbacker serve on the host and nbd-client (the NBD
// path), checks, and writes a file. The third boot imports through the
// vdev path again and checks what both paths wrote.
func TestVdev(t *testing.T) {
	v := prepareVMIn(t, vdevAssetsDir(), "scripts/vm/prepare.sh (scripts/vm/module.sh)")
	endpoint := testenv.S3Endpoint(t)
	bin := buildObjbacker(t)
	guestBin := buildStaticObjbacker(t)
	deadline := guestDeadline(t)
	defer logVerdict(t, "VDEV-E2E", time.Now(), fmt.Sprintf("pool on %d objbacker: vdevs, %d MiB + small files; vdev -> NBD -> vdev", vdevExports, vdevMiB))

	guestEndpoint := guestURL(t, endpoint)
	var names, hostExports, guestExports, buckets []string
	for i := range vdevExports {
		bucket := testenv.NewS3Bucket(t)
		name := fmt.Sprintf("disk%d", i)
		names = append(names, name)
		buckets = append(buckets, bucket)
		hostExports = append(hostExports, fmt.Sprintf("%s=s3://%s/vol?endpoint=%s", name, bucket, url.QueryEscape(endpoint)))
		guestExports = append(guestExports, fmt.Sprintf("%s=s3://%s/vol?endpoint=%s", name, bucket, url.QueryEscape(guestEndpoint)))
	}
	env := fmt.Sprintf("VDEV_EXPORTS=%s\nVDEV_SIZE=%s\nVDEV_CACHE=%s\nVDEV_TIMEOUT_MS=%d\nAWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\nAWS_REGION=%s\n",
		shQuote(strings.Join(guestExports, ",")), exportSize, vdevCache, vdevTimeoutMS,
		shQuote(os.Getenv("AWS_ACCESS_KEY_ID")), shQuote(os.Getenv("AWS_SECRET_ACCESS_KEY")), shQuote(os.Getenv("AWS_REGION")))
	if err := appendArchive(v.initrd, guestBin, []byte(env)); err != nil {
		t.Fatalf("adding objbacker to the initramfs: %v", err)
	}

	disks := []disk{{serial: "state", path: image(t, "state.img", 16<<20)}}
	port := testenv.FreePort(t)
	params := []string{
		"e2e.layout=stripe",
		"e2e.exports=" + strings.Join(names, ","),
		fmt.Sprintf("e2e.port=%d", port),
		fmt.Sprintf("e2e.conns=%d", connections),
		fmt.Sprintf("e2e.mb=%d", vdevMiB),
	}
	phase := func(name string) boot {
		return boot{name: name, disks: disks, limit: limit(t, deadline),
			params: append([]string{"e2e.phase=" + name}, params...)}
	}

	v.run(t, phase("vdev_create"))

	server := startObjbacker(t, bin, "objbacker-serve", port, hostExports)
	v.run(t, phase("nbd_cross"))
	server.requireConnections(t, names, connections)
	server.reportMetrics(t, names)
	server.stopClean(t)

	v.run(t, phase("vdev_verify"))

	for i, bucket := range buckets {
		r := checkBucket(t, endpoint, bucket, "vol/", blockSize)
		t.Logf("bucket %s (export %s): %d block objects of %d bytes, not all zeros; descriptor present: %v; %d problems",
			bucket, names[i], r.blocks, blockSize, r.descriptor, len(r.problems))
		for _, problem := range r.problems {
			t.Errorf("bucket %s: %s", bucket, problem)
		}
		if r.blocks < vdevMiB/(2*vdevExports) {
			t.Errorf("bucket %s holds %d block objects: the stripe left it nearly unused", bucket, r.blocks)
		}
	}
}

// guestURL is endpoint as the guest reaches it: the host's loopback is
// 10.0.2.2 behind QEMU's user-mode network.
func guestURL(t *testing.T, endpoint string) string {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatalf("S3 endpoint %q: %v", endpoint, err)
	}
	switch u.Hostname() {
	case "127.0.0.1", "localhost", "::1":
	default:
		t.Fatalf("S3 endpoint %q: the guest reaches only the host's loopback (10.0.2.2)", endpoint)
	}
	u.Host = "10.0.2.2:" + u.Port()
	return u.String()
}

func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// buildStaticObjbacker builds objbacker for the guest: static (the guest
// has only the libraries zpool needs) and without symbols (it is copied
// into every boot's initramfs).
func buildStaticObjbacker(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "objbacker-static")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Command(t, "go"), "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// appendArchive appends a cpio archive with /bin/objbacker and
// /e2e/vdev.env to the packed initramfs.
func appendArchive(initrd, bin string, env []byte) error {
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	return appendCpio(initrd, func(c *cpioWriter) {
		c.add("bin/objbacker", cpioFile|0o755, data)
		c.add("e2e/vdev.env", cpioFile|0o600, env)
	})
}

// appendCpio appends to the packed initramfs a cpio archive whose entries
// add makes, after padding the file to a 4-byte boundary, as the kernel
// reads concatenated archives.
func appendCpio(initrd string, add func(c *cpioWriter)) (err error) {
	f, err := os.OpenFile(initrd, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if _, err := f.Write(make([]byte, (4-st.Size()%4)%4)); err != nil {
		return err
	}
	c := &cpioWriter{w: f}
	add(c)
	return c.close()
}
