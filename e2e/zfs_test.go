//go:build linux

package e2e

import (
	"fmt"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/objbacker/objbacker/internal/testenv"
)

const (
	exportSize  = "4G"
	blockSize   = 1 << 20
	connections = 4 // nbd-client -C, per export
	// A healthy boot takes 30-90 s under TCG on 2 cores; these only keep a
	// hung guest from hanging CI.
	bootLimit  = 10 * time.Minute
	totalLimit = 30 * time.Minute
	// The guest writes this much beyond its random data files: 8 MiB
	// overwritten after the snapshot (which keeps the old records) and an
	// 8 MiB file added.
	changedMiB = 16
)

// pass is one scenario: a guest boot makes a pool on objbacker's exports,
// objbacker restarts, and a second boot imports the pool and verifies it.
type pass struct {
	name    string
	layout  string // stripe: the exports only; special: one export and a local special vdev
	exports int
	mb      int // MiB of random data, in 1 MiB records
	// kill: the first boot only syncs (sync, zpool sync; no export), then
	// objbacker gets SIGKILL instead of SIGTERM.
	kill bool
	// tls: objbacker requires TLS with a client certificate, and the
	// guest's nbd-client attaches with one (e2e.tls=1).
	tls bool
}

var passes = []pass{
	{name: "stripe", layout: "stripe", exports: 3, mb: 256},
	{name: "special", layout: "special", exports: 1, mb: 192},
	{name: "sigkill", layout: "stripe", exports: 1, mb: 64, kill: true},
	{name: "tls", layout: "stripe", exports: 1, mb: 64, tls: true},
}

// TestZFS runs ZFS in a QEMU guest on objbacker's exports backed by MinIO
// buckets: a pool striped over three buckets, a pool with its metadata and
// small blocks on a local special vdev, and a pool whose server is killed
// with SIGKILL after the guest synced. Each pass checks every file and the
// snapshot after objbacker restarted, scrubs, and checks the objects in
// the buckets.
func TestZFS(t *testing.T) {
	v := prepareVM(t)
	endpoint := testenv.S3Endpoint(t)
	bin := buildObjbacker(t)
	deadline := guestDeadline(t)
	for _, p := range passes {
		t.Run(p.name, func(t *testing.T) { p.run(t, v, bin, endpoint, deadline) })
	}
}

func (p pass) run(t *testing.T, v *vm, bin, endpoint string, deadline time.Time) {
	defer logVerdict(t, "ZFS-E2E", time.Now(), fmt.Sprintf("%s: %s layout over %d export(s), %d MiB + small files, restart after %s",
		p.name, p.layout, p.exports, p.mb, p.stopSignal()))
	var names, exports, buckets []string
	for i := range p.exports {
		bucket := testenv.NewS3Bucket(t)
		name := fmt.Sprintf("disk%d", i)
		names = append(names, name)
		buckets = append(buckets, bucket)
		exports = append(exports, fmt.Sprintf("%s=s3://%s/vol?endpoint=%s", name, bucket, url.QueryEscape(endpoint)))
	}
	disks := []disk{{serial: "state", path: image(t, "state.img", 16<<20)}}
	if p.layout == "special" {
		disks = append(disks, disk{serial: "special", path: partitionedImage(t, "special.img", 2<<30)})
	}
	port := testenv.FreePort(t)
	params := []string{
		"e2e.layout=" + p.layout,
		"e2e.exports=" + strings.Join(names, ","),
		fmt.Sprintf("e2e.port=%d", port),
		fmt.Sprintf("e2e.conns=%d", connections),
		fmt.Sprintf("e2e.mb=%d", p.mb),
	}

	var tls []string
	if p.tls {
		tls = guestTLS(t, v)
		params = append(params, "e2e.tls=1")
	}

	end := "export"
	if p.kill {
		end = "sync"
	}
	first := startObjbacker(t, bin, "objbacker-1", port, exports, append([]string{"--size", exportSize}, tls...)...)
	create := boot{name: "create", disks: disks, limit: limit(t, deadline),
		params: append([]string{"e2e.phase=create", "e2e.end=" + end}, params...)}
	if p.kill {
		create.onSynced = func() {
			first.reportMetrics(t, names)
			st := first.stop(t, syscall.SIGKILL)
			if ws, ok := st.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("objbacker-1 ended with %s, not by SIGKILL", st)
			}
		}
	}
	v.run(t, create)
	first.requireConnections(t, names, connections)
	if p.tls {
		first.requireTLS(t, connections*len(names))
	}
	verify := boot{name: "verify", disks: disks, params: append([]string{"e2e.phase=verify"}, params...)}
	if p.kill {
		recoverBuckets(t, bin, port, exports)
		// The pool was never exported.
		verify.params = append(verify.params, "e2e.force=1")
	} else {
		first.reportMetrics(t, names)
		first.stopClean(t)
	}

	// No --size: the geometry comes from the buckets.
	second := startObjbacker(t, bin, "objbacker-2", port, exports, tls...)
	verify.limit = limit(t, deadline)
	v.run(t, verify)
	second.requireConnections(t, names, connections)
	if p.tls {
		second.requireTLS(t, connections*len(names))
	}
	second.reportMetrics(t, names)
	second.stopClean(t)

	p.checkBuckets(t, endpoint, names, buckets)
}

// recoverBuckets does what an operator does after a crash. The killed
// server left its mount marker on the buckets, so a plain restart must
// refuse them (exit 2) rather than pass silently over lost writes; then
// objbacker reset-mounted removes the markers.
func recoverBuckets(t *testing.T, bin string, port int, exports []string) {
	t.Helper()
	args := []string{"serve", "--listen", fmt.Sprintf("127.0.0.1:%d", port)}
	for _, e := range exports {
		args = append(args, "--export", e)
	}
	code, out := runObjbacker(t, bin, args...)
	if code != 2 || !strings.Contains(out, "marked as mounted") {
		t.Fatalf("a restart over the crashed server's mount marker exited %d, want 2 naming the marker:\n%s", code, out)
	}
	t.Logf("restart after SIGKILL refused as it should be: %s", strings.TrimSpace(out))
	for _, e := range exports {
		_, u, _ := strings.Cut(e, "=")
		if code, out := runObjbacker(t, bin, "reset-mounted", u); code != 0 {
			t.Fatalf("objbacker reset-mounted %s exited %d:\n%s", u, code, out)
		}
	}
}

// checkBuckets checks every object (see checkBucket) and that the large
// records are in the buckets: spread over all of a stripe's buckets, and,
// with a special vdev, little else beside them.
func (p pass) checkBuckets(t *testing.T, endpoint string, names, buckets []string) {
	t.Helper()
	data := p.mb + changedMiB
	total := 0
	counts := make([]int, len(buckets))
	for i, bucket := range buckets {
		r := checkBucket(t, endpoint, bucket, "vol/", blockSize)
		counts[i] = r.blocks
		total += r.blocks
		t.Logf("bucket %s (export %s): %d block objects, each named prefix + 8 hex digits, %d bytes and not all zeros; descriptor present: %v; %d problems",
			bucket, names[i], r.blocks, blockSize, r.descriptor, len(r.problems))
		for _, problem := range r.problems {
			t.Errorf("bucket %s: %s", bucket, problem)
		}
	}
	t.Logf("%d block objects in all for %d MiB of large records", total, data)
	if total < data {
		t.Errorf("%d block objects cannot hold the %d MiB of 1 MiB records the guest wrote", total, data)
	}
	for i, n := range counts {
		if len(counts) > 1 && n < data/(2*len(counts)) {
			t.Errorf("bucket of %s holds %d of %d objects: the stripe left it nearly unused", names[i], n, total)
		}
	}
	if p.layout == "special" && total > data+specialSlack {
		t.Errorf("%d block objects for %d MiB of large records: metadata or small blocks went to the bucket, not the special vdev", total, data)
	}
}

// specialSlack is what the bucket of a pool with a special vdev may hold
// beyond the large records, once trimmed: the labels at both ends of the
// device, and objects shared by the four files of 132-900 KiB and the ends
// of runs of records (seen: 7-10). Metadata in the bucket would scatter
// over dozens more: a single-export pool without the special vdev comes to
// about data + 60. Small files that miss the special vdev are caught in the
// guest, which checks the special vdev's allocation.
const specialSlack = 24

func (p pass) stopSignal() string {
	if p.kill {
		return "zpool sync and SIGKILL"
	}
	return "zpool export and SIGTERM"
}

// limit is the time a boot may take: bootLimit, less if the whole test
// would overrun.
func limit(t *testing.T, deadline time.Time) time.Duration {
	t.Helper()
	left := time.Until(deadline)
	if left <= 0 {
		t.Fatalf("no time left for another boot: TestZFS stops after %v, or a minute before go test's -timeout", totalLimit)
	}
	return min(bootLimit, left)
}
