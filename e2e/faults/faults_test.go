package faults

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/objbacker/objbacker/blockmap"
	"github.com/objbacker/objbacker/internal/faultproxy"
)

// roundsEnv sets the suite's length: the SIGKILL rounds, from which the
// other scenarios' rounds and sizes follow. CI runs the default, in about
// four minutes; a longer run by hand, from the repository root:
//
//	OBJBACKER_FAULTS_ROUNDS=200 OBJBACKER_TEST_STRICT=1 \
//	  go test -race -timeout 2h -v -run '^TestFaults$' ./e2e/faults/
//
// OBJBACKER_FAULTS_SEED repeats a run's random choices (up to timing).
const roundsEnv = "OBJBACKER_FAULTS_ROUNDS"

const defaultRounds = 20

// suite is what the scenarios share: the binary, the MinIO, the length and
// the figures for the final table.
type suite struct {
	bin     string
	minio   *minio
	s3      *s3.Client
	rounds  int
	seed    uint64
	results []*result
}

// result is one scenario's line in the final table.
type result struct {
	name   string
	fig    *figures
	rounds int
	took   time.Duration
	proxy  string
	// failed and skipped: a skipped scenario is no pass.
	failed, skipped bool
}

// TestFaults runs objbacker through a store that misbehaves, daemons that
// are killed, and daemons that race, with a recording writer on a real
// NBD client, and checks after each that every write acknowledged with
// FUA or before a successful FLUSH reads back exactly, through a fresh
// daemon and in the raw objects. It ends with a table of the figures.
func TestFaults(t *testing.T) {
	rounds := defaultRounds
	if v := os.Getenv(roundsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number of rounds", roundsEnv, v)
		}
		rounds = n
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("OBJBACKER_FAULTS_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	// The seed is in the log so that a failing run's choices can be
	// repeated (up to timing).
	t.Logf("%s=%d OBJBACKER_FAULTS_SEED=%d", roundsEnv, rounds, seed)

	m := startMinio(t)
	s := &suite{bin: buildObjbacker(t), minio: m, s3: m.s3Client(t), rounds: rounds, seed: seed}
	begin := time.Now()
	defer func() { s.table(t, time.Since(begin)) }()

	scale := max(1, rounds/defaultRounds)
	ops := 300 * scale
	for _, fc := range []struct {
		name   string
		faults faultproxy.Faults
	}{
		{"503-500", faultproxy.Faults{Status503: 0.2, Status500: 0.05}},
		{"reset-mid-body", faultproxy.Faults{Reset: 0.2}},
		{"stall", faultproxy.Faults{Stall: 0.05, StallFor: 3 * time.Second}},
		{"corrupt-get", faultproxy.Faults{CorruptGet: 0.2}},
		{"corrupt-put", faultproxy.Faults{CorruptPut: 0.2}},
		{"lost-response", faultproxy.Faults{LoseResponse: 0.2}},
	} {
		s.run(t, fc.name, func(sc *scenario) { sc.faultClass(fc.faults, ops) })
	}
	s.run(t, "corrupt-list", func(sc *scenario) { sc.corruptList(max(2, rounds/10)) })
	s.run(t, "minio-sigkill", func(sc *scenario) { sc.minioKill(max(2, rounds/10)) })
	s.run(t, "objbacker-sigkill", func(sc *scenario) { sc.daemonKill(rounds) })
	s.run(t, "sigterm-mid-write", func(sc *scenario) { sc.sigtermMidWrite(max(3, rounds/5)) })
	s.run(t, "store-down", func(sc *scenario) { sc.storeDown() })
	s.run(t, "two-daemons", func(sc *scenario) { sc.twoDaemons(max(5, rounds/4)) })
}

// scenario is one subtest: its bucket, ledger and figures.
type scenario struct {
	*suite
	t       *testing.T
	name    string
	bucket  string
	ledger  *ledger
	fig     *figures
	res     *result
	rng     *rand.Rand
	proxy   *faultproxy.Proxy
	daemons int
}

func (s *suite) run(t *testing.T, name string, body func(*scenario)) {
	t.Run(name, func(t *testing.T) {
		res := &result{name: name, fig: newFigures()}
		s.results = append(s.results, res)
		begin := time.Now()
		sc := &scenario{suite: s, t: t, name: name, fig: res.fig, res: res,
			rng: rand.New(rand.NewPCG(s.seed, uint64(len(s.results))))}
		sc.ledger = newLedger(deviceSize/unitSize, res.fig, t.Logf)
		sc.bucket = newBucket(t, s.s3, fmt.Sprintf("faults-%s-%d", name, time.Now().UnixNano()%1e9))
		defer func() {
			res.took = time.Since(begin)
			res.failed, res.skipped = t.Failed(), t.Skipped()
			if sc.proxy != nil {
				res.proxy = sc.proxy.Stats().String()
			}
		}()
		body(sc)
		// A read that returned what no write left there is wrong data
		// served to a client, whatever the store did.
		if n := sc.fig.Get("bad reads"); n > 0 {
			t.Errorf("%d reads returned bytes that no acknowledged or failed write left there (the log above names them)", n)
		}
	})
}

func (sc *scenario) directURL() string {
	return "s3://" + sc.bucket + "/" + prefix + "?endpoint=" + sc.minio.endpoint()
}

// proxyURL is the bucket's URL through the scenario's fault proxy, which
// it starts the first time, injecting nothing until told.
func (sc *scenario) proxyURL() string {
	if sc.proxy == nil {
		p, err := faultproxy.Start(sc.minio.endpoint(), sc.rng.Uint64(), slog.New(slog.DiscardHandler))
		if err != nil {
			sc.t.Fatal(err)
		}
		sc.t.Cleanup(func() { p.Close() })
		sc.proxy = p
	}
	return "s3://" + sc.bucket + "/" + prefix + "?endpoint=" + sc.proxy.URL()
}

// daemon starts the scenario's next daemon and waits until it listens.
func (sc *scenario) daemon(url string, extra ...string) *daemon {
	sc.t.Helper()
	sc.daemons++
	return startDaemon(sc.t, sc.bin, fmt.Sprintf("%s-%d", sc.name, sc.daemons), url, extra...)
}

func (sc *scenario) writer(d *daemon) *writer { return startWriter(sc.t, sc.ledger, d.uri()) }

// mixed is the suite's usual workload: writes of 4-64 KiB, a tenth of
// them FUA, a FLUSH every 20 requests, a fifth of the requests reads.
func (sc *scenario) mixed(ops int) workload {
	return workload{Ops: ops, Seed: sc.rng.Int64(), Depth: 8, MaxUnits: 16, FUA: 0.1, FlushEvery: 20, Read: 0.2}
}

// faultClass: a daemon behind the proxy, faults switched on once it
// serves, a mixed workload and a FLUSH, then SIGTERM with the faults still
// on, which must flush and exit 0; then every acknowledged write must be
// in the bucket, and no request may have failed: each of these faults is
// transient.
func (sc *scenario) faultClass(f faultproxy.Faults, ops int) {
	t := sc.t
	d := sc.daemon(sc.proxyURL())
	w := sc.writer(d)
	sc.proxy.SetFaults(f)
	w.run(t, sc.mixed(ops), 5*time.Minute)
	w.flush(t, 2*time.Minute)
	w.quit(t)
	sc.stopExpectingClean(d)
	sc.proxy.SetFaults(faultproxy.Faults{})
	sc.res.rounds = 1
	if sc.proxy.Stats().Injected() == 0 {
		t.Errorf("the proxy injected no fault: the scenario tried nothing")
	}
	sc.verify("after " + sc.name)
	// A fault strikes at most one attempt in four; ten attempts fail
	// together about once in a million requests.
	if n := sc.fig.Get("write EIO") + sc.fig.Get("flush EIO") + sc.fig.Get("read EIO"); n > 0 {
		t.Errorf("%d requests failed with %s: transient faults must be retried, not reach the client", n, sc.name)
	}
}

// stopExpectingClean sends SIGTERM and expects a clean stop.
func (sc *scenario) stopExpectingClean(d *daemon) {
	d.Signal(syscall.SIGTERM)
	sc.expectClean(d)
}

// expectClean waits for a daemon sent one SIGTERM; exit 0 makes every
// acknowledged write durable in the ledger, anything else fails the
// scenario.
func (sc *scenario) expectClean(d *daemon) {
	st, took := d.Wait(sc.t, 3*time.Minute)
	if st.ExitCode() == 0 {
		sc.ledger.stoppedCleanly()
		return
	}
	sc.fig.Add("unclean stops", 1)
	sc.t.Errorf("%s: SIGTERM gave %s after %.1f s, want exit 0 (flushed and stopped cleanly); log tail:\n%s", d.Name, st, took.Seconds(), d.Tail(15))
}

// listedLine is what a device logs, with --log-format json, once its
// background listing is complete.
var listedLine = []byte(`"msg":"listing complete"`)

// corruptList: the bucket is filled and stopped cleanly; then each round
// starts a daemon whose start-up listing has one key changed, and writes
// partial blocks over what it believes is there.
func (sc *scenario) corruptList(rounds int) {
	t := sc.t
	d := sc.daemon(sc.directURL())
	w := sc.writer(d)
	if err := w.do(t, map[string]any{"cmd": "fill", "depth": 8}, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	w.quit(t)
	sc.stopExpectingClean(d)
	for round := 1; round <= rounds; round++ {
		sc.proxyURL()
		damaged := sc.proxy.Stats().CorruptLists
		sc.proxy.SetFaults(faultproxy.Faults{CorruptList: 1})
		d := sc.daemon(sc.proxyURL())
		// serve lists the bucket in the background once it serves: the
		// faults stay on until the whole listing has come through them.
		if err := d.WaitLogged(t.Context(), listedLine, "done listing", time.Minute); err != nil {
			t.Fatal(err)
		}
		sc.proxy.SetFaults(faultproxy.Faults{})
		if sc.proxy.Stats().CorruptLists == damaged {
			t.Fatalf("round %d: the daemon started on a listing the proxy did not damage", round)
		}
		w := sc.writer(d)
		// Small writes: each partial block is read, merged and written
		// back whole.
		w.run(t, workload{Ops: 150, Seed: sc.rng.Int64(), Depth: 8, MaxUnits: 2, FlushEvery: 10, Read: 0.3}, 5*time.Minute)
		w.flush(t, 2*time.Minute)
		w.quit(t)
		sc.stopExpectingClean(d)
		sc.res.rounds++
		sc.verify(fmt.Sprintf("round %d", round))
	}
}

// minioKill: MinIO is SIGKILLed at a random moment of a mixed workload and
// started again on the same data two seconds later; the daemon rides it
// out on retries.
func (sc *scenario) minioKill(rounds int) {
	t := sc.t
	for round := 1; round <= rounds; round++ {
		d := sc.daemon(sc.directURL())
		w := sc.writer(d)
		restarted := make(chan error, 1)
		delay := time.Duration(200+sc.rng.IntN(1500)) * time.Millisecond
		go func() {
			time.Sleep(delay)
			sc.minio.kill()
			time.Sleep(2 * time.Second)
			restarted <- sc.minio.start(t.Context())
		}()
		w.run(t, sc.mixed(400), 5*time.Minute)
		if err := <-restarted; err != nil {
			t.Fatal(err)
		}
		w.flush(t, 2*time.Minute)
		w.quit(t)
		sc.stopExpectingClean(d)
		sc.res.rounds++
		sc.verify(fmt.Sprintf("round %d (MinIO killed after %v)", round, delay))
	}
}

// daemonKill: each round SIGKILLs the daemon at a random moment of a mixed
// workload, then starts a fresh one with --force (the marker stays behind
// a kill), which reads everything back before it takes the next round's
// writes.
func (sc *scenario) daemonKill(rounds int) {
	t := sc.t
	d := sc.daemon(sc.directURL())
	for round := 1; round <= rounds; round++ {
		w := sc.writer(d)
		delay := time.Duration(100+sc.rng.IntN(2400)) * time.Millisecond
		killed := time.AfterFunc(delay, func() { d.Signal(syscall.SIGKILL) })
		w.run(t, sc.mixed(100000), 5*time.Minute)
		if !w.dead {
			t.Fatalf("round %d: the writer finished before the kill at %v", round, delay)
		}
		killed.Stop()
		<-d.Exited()
		d = sc.daemon(sc.directURL(), "--force")
		sc.res.rounds++
		sc.readBack(d, fmt.Sprintf("round %d (killed after %v)", round, delay))
	}
	d.stopClean(t)
}

// sigtermMidWrite: SIGTERM at a random moment of a mixed workload must
// flush and exit 0, so that every acknowledged write, flushed or not, is
// in the bucket, and the marker is gone: the next daemon starts without
// --force.
func (sc *scenario) sigtermMidWrite(rounds int) {
	t := sc.t
	for round := 1; round <= rounds; round++ {
		d := sc.daemon(sc.directURL())
		w := sc.writer(d)
		delay := time.Duration(200+sc.rng.IntN(2000)) * time.Millisecond
		termed := time.AfterFunc(delay, func() { d.Signal(syscall.SIGTERM) })
		w.run(t, sc.mixed(100000), 5*time.Minute)
		if termed.Stop() {
			// The workload ended first (it should not): stop it now.
			t.Errorf("round %d: the writer finished before the SIGTERM at %v", round, delay)
			d.Signal(syscall.SIGTERM)
		}
		// One SIGTERM only: a second one exits at once, unflushed.
		sc.expectClean(d)
		sc.res.rounds++
		check := sc.daemon(sc.directURL(), "--read-only")
		sc.readBack(check, fmt.Sprintf("round %d (SIGTERM after %v)", round, delay))
		check.stopClean(t)
	}
}

// storeDown: the store goes away for longer than the retry budget. A
// FLUSH must fail (EIO), and succeed once the store is back, with the data
// in it. Then SIGTERM with the store down must give up at --stop-timeout
// and exit 1, leaving the marker.
func (sc *scenario) storeDown() {
	t := sc.t
	const stopTimeout = 5 * time.Second
	d := sc.daemon(sc.proxyURL(), "--stop-timeout", stopTimeout.String())
	w := sc.writer(d)
	w.run(t, workload{Ops: 100, Seed: sc.rng.Int64(), Depth: 8, MaxUnits: 16}, 2*time.Minute)
	if !w.flush(t, 2*time.Minute) {
		t.Errorf("FLUSH with the store up failed")
	}

	if err := sc.proxy.SetDown(true); err != nil {
		t.Fatal(err)
	}
	// Few enough blocks to stay in the cache's room for dirty blocks:
	// these writes are acknowledged without the store.
	w.run(t, workload{Ops: 10, Seed: sc.rng.Int64(), Depth: 4, MaxUnits: 2}, 2*time.Minute)
	begin := time.Now()
	if w.flush(t, 3*time.Minute) {
		t.Errorf("FLUSH with the store down succeeded after %.1f s; want EIO once the retries run out", time.Since(begin).Seconds())
	}
	sc.fig.Add("down flush s", int64(time.Since(begin).Seconds()))
	if err := sc.proxy.SetDown(false); err != nil {
		t.Fatal(err)
	}
	if !w.flush(t, 2*time.Minute) {
		t.Errorf("FLUSH after the store came back failed: the writes acknowledged while it was down did not arrive")
	}

	w.run(t, workload{Ops: 10, Seed: sc.rng.Int64(), Depth: 4, MaxUnits: 2}, 2*time.Minute)
	if err := sc.proxy.SetDown(true); err != nil {
		t.Fatal(err)
	}
	w.quit(t)
	st, took := d.Stop(t, syscall.SIGTERM, 3*time.Minute)
	sc.fig.Add("stop s", int64(took.Seconds()))
	if code := st.ExitCode(); code != 1 || took > stopTimeout+10*time.Second {
		t.Errorf("SIGTERM with the store down: exit %d after %.1f s; want 1 at about --stop-timeout %v; log tail:\n%s", code, took.Seconds(), stopTimeout, d.Tail(15))
	}
	if err := sc.proxy.SetDown(false); err != nil {
		t.Fatal(err)
	}
	sc.res.rounds = 1
	sc.verify("after the store came back")
}

// twoDaemons: two daemons started at the same moment on one bucket (the
// first round on a fresh bucket, so their geometry writes race too):
// exactly one serves, the other is refused (exit 2). Every other round
// races through the proxy dropping a third of the store's answers during
// start-up, the lost answer to a marker PUT among them. The one that
// serves takes writes and stops cleanly, freeing the bucket for the next
// round; after a round that went wrong the marker is removed by hand.
func (sc *scenario) twoDaemons(rounds int) {
	t := sc.t
	for round := 1; round <= rounds; round++ {
		url := sc.directURL()
		lossy := round%2 == 0
		if lossy {
			url = sc.proxyURL()
			sc.proxy.SetFaults(faultproxy.Faults{LoseResponse: 0.3})
			sc.fig.Add("lossy rounds", 1)
		}
		a := spawnDaemon(t, sc.bin, fmt.Sprintf("%s-%d-a", sc.name, round), url)
		b := spawnDaemon(t, sc.bin, fmt.Sprintf("%s-%d-b", sc.name, round), url)
		serving := settle(t, a, b)
		if lossy {
			sc.proxy.SetFaults(faultproxy.Faults{})
		}
		sc.res.rounds++
		if len(serving) != 1 {
			sc.fig.Add(fmt.Sprintf("%d served", len(serving)), 1)
			t.Errorf("round %d (lossy %v): %d daemons serve one bucket, want exactly 1; log tails:\n%s\n%s", round, lossy, len(serving), a.Tail(3), b.Tail(3))
			for _, d := range serving {
				d.Kill()
			}
			sc.removeMarker()
			continue
		}
		winner, loser := a, b
		if winner != serving[0] {
			winner, loser = b, a
		}
		if code := loser.State().ExitCode(); code != 2 {
			t.Errorf("round %d (lossy %v): the refused daemon exited %d, want 2 (bucket marked as mounted); log tail:\n%s", round, lossy, code, loser.Tail(3))
		}
		w := sc.writer(winner)
		w.run(t, sc.mixed(60), 2*time.Minute)
		w.quit(t)
		sc.stopExpectingClean(winner)
		if sc.t.Failed() {
			sc.removeMarker()
		}
	}
	sc.verify("after the races")
}

// removeMarker deletes the bucket's mount marker directly, as
// `objbacker reset-mounted` would.
func (sc *scenario) removeMarker() {
	key := prefix + "/" + blockmap.MountMarkerKey
	if _, err := sc.s3.DeleteObject(sc.t.Context(), &s3.DeleteObjectInput{Bucket: &sc.bucket, Key: &key}); err != nil {
		sc.t.Fatalf("removing the mount marker: %v", err)
	}
}

// settle waits until each daemon either listens or has exited, and
// returns those that serve a second later.
func settle(t *testing.T, daemons ...*daemon) []*daemon {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for _, d := range daemons {
		for d.Running() && time.Now().Before(deadline) {
			if err := d.WaitServing(t.Context(), 100*time.Millisecond); err == nil {
				break
			}
		}
	}
	time.Sleep(time.Second)
	var serving []*daemon
	for _, d := range daemons {
		if d.Running() {
			serving = append(serving, d)
		}
	}
	return serving
}

// table prints every scenario's figures.
func (s *suite) table(t *testing.T, took time.Duration) {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	cols := []string{"writes", "acked", "flushed", "lost", "corrupted", "bad reads", "raw mismatch", "write EIO", "flush ok", "flush EIO", "reads", "read EIO"}
	fmt.Fprintf(tw, "scenario\tresult\trounds\t%s\ttime\t\n", strings.Join(cols, "\t"))
	for _, r := range s.results {
		verdict := "ok"
		switch {
		case r.failed:
			verdict = "FAIL"
		case r.skipped:
			verdict = "SKIPPED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t", r.name, verdict, r.rounds)
		for _, c := range cols {
			fmt.Fprintf(tw, "%d\t", r.fig.Get(c))
		}
		fmt.Fprintf(tw, "%.0fs\t\n", r.took.Seconds())
	}
	tw.Flush()
	b.WriteString("\nother figures:\n")
	for _, r := range s.results {
		var extra []string
		for _, name := range r.fig.names {
			if !strings.Contains("\t"+strings.Join(cols, "\t")+"\t", "\t"+name+"\t") {
				extra = append(extra, fmt.Sprintf("%s %d", name, r.fig.Get(name)))
			}
		}
		if r.proxy != "" {
			extra = append(extra, "proxy: "+r.proxy)
		}
		if len(extra) > 0 {
			fmt.Fprintf(&b, "  %s: %s\n", r.name, strings.Join(extra, "; "))
		}
	}
	t.Logf("fault suite, %d SIGKILL rounds, %.0f s:\n%s", s.rounds, took.Seconds(), b.String())
}
