//go:build linux

package e2e

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/objbacker/objbacker/internal/testenv"
)

const (
	restartExports = 3
	// restartMiB is the load's four source files together; the load writes
	// them over and over, a file of restartMiB/4 at a time.
	restartMiB = 32
	restarts   = 5
	// upgradeAt is the restart that starts a second, separately built
	// binary (another path), standing for an upgrade.
	upgradeAt = 3
	// restartPause is how long the load runs between two restarts.
	restartPause = 8 * time.Second
	// netCutFor is how long the network cut after the restarts lasts.
	netCutFor = 10 * time.Second
)

// TestRestart attaches three exports in a QEMU guest with objbacker attach
// (netlink, supervised) instead of nbd-client, stripes a pool over them,
// and runs a write and read load with checksums while the host restarts
// objbacker serve with SIGTERM five times, once with a second binary, and
// then cuts the network between them for 10 s (netCut: every connection
// dropped, new ones refused). The guest then requires that the load saw no
// error, every file's checksum, zero read, write and checksum errors, and
// a clean scrub.
func TestRestart(t *testing.T) {
	v := prepareVM(t)
	endpoint := testenv.S3Endpoint(t)
	bin := buildObjbacker(t)
	upgrade := buildObjbacker(t)
	deadline := guestDeadline(t)
	defer logVerdict(t, "RESTART-E2E", time.Now(), fmt.Sprintf("pool striped over %d exports attached by objbacker attach, %d SIGTERM restarts (one a new binary) and a %v network cut under a load",
		restartExports, restarts, netCutFor))

	names, exports := attachExports(t, v, endpoint, restartExports)

	// The guest asks http://10.0.2.2:CTL/ whether to go on with its load.
	var stop atomic.Bool
	ctl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if stop.Load() {
			fmt.Fprint(w, "stop")
			return
		}
		fmt.Fprint(w, "run")
	})}
	go srv.Serve(ctl)
	t.Cleanup(func() { srv.Close() })

	port := testenv.FreePort(t)
	// The guest reaches the server through the cut.
	network := startNetCut(t, fmt.Sprintf("127.0.0.1:%d", port))
	params := []string{
		"e2e.phase=restart",
		"e2e.exports=" + strings.Join(names, ","),
		fmt.Sprintf("e2e.port=%d", network.port()),
		fmt.Sprintf("e2e.conns=%d", connections),
		fmt.Sprintf("e2e.mb=%d", restartMiB),
		fmt.Sprintf("e2e.ctl=%d", ctl.Addr().(*net.TCPAddr).Port),
	}
	server := startObjbacker(t, bin, "objbacker-0", port, exports, "--size", exportSize)
	// The restarts run beside the console loop, from the guest's
	// "E2E-LOAD-RUNNING" on; the last server is handed back on done.
	done := make(chan *objbacker, 1)
	var started atomic.Bool
	var continuations, reconnects sync.Map // device → counts, from the guest's summary
	restartAll := func() {
		s := server
		defer func() { stop.Store(true); done <- s }()
		for i := 1; i <= restarts; i++ {
			time.Sleep(restartPause)
			b, what := bin, "same binary"
			if i == upgradeAt {
				b, what = upgrade, "new binary "+upgrade
			}
			t0 := time.Now()
			if !s.stopCleanErr(t) {
				return
			}
			stopped := time.Since(t0)
			s = startObjbacker(t, b, fmt.Sprintf("objbacker-%d", i), port, exports)
			t.Logf("restart %d (%s): SIGTERM stop %.1f s, serving again after %.1f s", i, what, stopped.Seconds(), time.Since(t0).Seconds())
		}
		time.Sleep(restartPause)
		dropped := network.cut(netCutFor)
		t.Logf("network cut: %d connections dropped, new ones refused for %v", dropped, netCutFor)
		time.Sleep(netCutFor + restartPause)
		t.Logf("network cut over: %d connections refused meanwhile", network.refusals())
	}
	v.run(t, boot{name: "restart", limit: limit(t, deadline), params: params,
		disks: []disk{{serial: "state", path: image(t, "state.img", 16<<20)}},
		onLine: func(line string) {
			if line == "E2E-LOAD-RUNNING" && started.CompareAndSwap(false, true) {
				go restartAll()
			}
			var dev string
			var reconnected, clean int
			if n, _ := fmt.Sscanf(line, "E2E| %s %d reconnects, %d clean continuations", &dev, &reconnected, &clean); n == 3 {
				continuations.Store(strings.TrimSuffix(dev, ":"), clean)
				reconnects.Store(strings.TrimSuffix(dev, ":"), reconnected)
			}
		}})
	if !started.Load() {
		t.Fatal("the guest never started its load")
	}
	last := <-done
	if !stop.Load() {
		t.Fatal("the restarts did not finish")
	}
	// Every restart closed every connection: each device must have been
	// reconnected to a continuing daemon at least once per restart, or the
	// load ran on something other than the restarted servers; the cut adds
	// a reconnect to the same daemon.
	for i := range restartExports {
		dev := fmt.Sprintf("/dev/nbd%d", i)
		n, ok := continuations.Load(dev)
		if !ok || n.(int) < restarts {
			t.Errorf("%s: %v clean continuations in the supervisor's log, want at least %d (one per restart)", dev, n, restarts)
		}
		if r, ok := reconnects.Load(dev); !ok || r.(int) < restarts+1 {
			t.Errorf("%s: %v reconnects in the supervisor's log, want at least %d (one per restart, one after the network cut)", dev, r, restarts+1)
		}
	}
	last.reportMetrics(t, names)
	last.stopClean(t)
}

// attachExports makes n buckets for exports disk0, disk1, … (NAME=URL) and
// puts a static objbacker into the guest's initramfs, for objbacker attach.
func attachExports(t *testing.T, v *vm, endpoint string, n int) (names, exports []string) {
	t.Helper()
	for i := range n {
		bucket := testenv.NewS3Bucket(t)
		name := fmt.Sprintf("disk%d", i)
		names = append(names, name)
		exports = append(exports, fmt.Sprintf("%s=s3://%s/vol?endpoint=%s", name, bucket, url.QueryEscape(endpoint)))
	}
	if err := appendArchive(v.initrd, buildStaticObjbacker(t), nil); err != nil {
		t.Fatalf("adding objbacker to the initramfs: %v", err)
	}
	return names, exports
}

// stopCleanErr is stopClean for a goroutine: it reports a failure with
// t.Errorf and returns false.
func (s *objbacker) stopCleanErr(t *testing.T) bool {
	st, took := s.Stop(t, syscall.SIGTERM, 2*time.Minute)
	if st.ExitCode() != 0 || !strings.Contains(string(s.LogBytes()), `"stopped cleanly"`) {
		t.Errorf("%s: SIGTERM gave %s after %.1f s, not a clean stop; log tail:\n%s", s.Name, st, took.Seconds(), s.Tail(40))
		return false
	}
	return true
}
