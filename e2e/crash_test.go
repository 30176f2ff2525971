//go:build linux

package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/objbacker/objbacker/internal/testenv"
)

const (
	crashExports = 2
	crashMiB     = 32
)

// TestCrash kills objbacker serve with SIGKILL under a live pool attached
// by objbacker attach, with no journal, and starts another daemon on the
// same buckets (after reset-mounted, as an operator or a unit with --force
// would). The acknowledged writes the dead daemon had not uploaded may be
// gone, so nothing may trust the new one silently: the guest requires that
// every supervisor refuses it as a lossy restart and that ZFS suspends the
// pool. Then the README's recovery: a reboot, attach again, zpool import
// -f, scrub; every file synced before the kill must be intact, with zero
// errors.
func TestCrash(t *testing.T) {
	v := prepareVM(t)
	endpoint := testenv.S3Endpoint(t)
	bin := buildObjbacker(t)
	deadline := guestDeadline(t)
	defer logVerdict(t, "CRASH-E2E", time.Now(), fmt.Sprintf("SIGKILL of the server under a pool striped over %d exports attached by objbacker attach, no journal: refused, suspended, recovered", crashExports))

	names, exports := attachExports(t, v, endpoint, crashExports)
	port := testenv.FreePort(t)
	params := []string{
		"e2e.exports=" + strings.Join(names, ","),
		fmt.Sprintf("e2e.port=%d", port),
		fmt.Sprintf("e2e.conns=%d", connections),
		fmt.Sprintf("e2e.mb=%d", crashMiB),
	}
	state := []disk{{serial: "state", path: image(t, "state.img", 16<<20)}}

	first := startObjbacker(t, bin, "objbacker-0", port, exports, "--size", exportSize)
	var second *objbacker
	v.run(t, boot{name: "crash", limit: limit(t, deadline), params: append(params, "e2e.phase=crash"), disks: state,
		onLine: func(line string) {
			if line != "E2E-CRASH-NOW" || second != nil {
				return
			}
			// Done here, blocking the console loop for a few seconds: the
			// guest's output waits in its file, and the test goroutine
			// may fail the test.
			st, took := first.Stop(t, syscall.SIGKILL, time.Minute)
			t.Logf("%s: SIGKILL -> %s after %.1f s, under the guest's load", first.Name, st, took.Seconds())
			recoverBuckets(t, bin, port, exports)
			second = startObjbacker(t, bin, "objbacker-1", port, exports)
		}})
	if second == nil {
		t.Fatal("the guest never asked for the kill")
	}
	// The guest's supervisors refused the new daemon: it served no I/O.
	// The recovery boot attaches anew and imports the pool.
	v.run(t, boot{name: "crash-recover", limit: limit(t, deadline), disks: state,
		params: append(params, "e2e.phase=crash_recover", "e2e.force=1")})
	second.reportMetrics(t, names)
	second.stopClean(t)
}
