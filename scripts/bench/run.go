package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// record is one measured phase, one line of the records file.
type record struct {
	Section string `json:"section"`
	Row     string `json:"row"`
	Subject string `json:"subject"`
	Rep     int    `json:"rep"`
	Attempt int    `json:"attempt"`

	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
	MiBs    float64 `json:"mib_s"`
	IOPS    float64 `json:"iops"`
	P99ms   float64 `json:"p99_ms"`

	// ServerCPU is the subject's server processes (objbacker, nbdkit,
	// s3backer); ClientCPU the measured command and its children (fio or
	// the bare client); AlsoCPU our other processes (MinIO).
	ServerCPU float64 `json:"server_cpu_s"`
	ClientCPU float64 `json:"client_cpu_s"`
	AlsoCPU   float64 `json:"also_cpu_s"`

	Wall float64 `json:"wall_s"`
	// OtherCores is the CPU that processes not ours used during the phase,
	// in cores: the machine's busy time minus everything above.
	OtherCores float64 `json:"other_cores"`
	StealCores float64 `json:"steal_cores"`
	Stolen     bool    `json:"stolen"`
	QuietWait  float64 `json:"quiet_wait_s"`

	PeakRSS int64 `json:"peak_rss"` // the largest VmHWM among the servers
	Limit   int64 `json:"limit,omitempty"`

	// The latency sweep's coordinates (section 6): the store's latency
	// as Go writes durations ("0s" for none), --parallel, the exports read
	// at once, the blocks in flight the bound assumes (--parallel, or the
	// read-ahead window of a QD1 reader), and the least fraction of that
	// bound the row should reach (0: none).
	Latency  string  `json:"latency,omitempty"`
	Parallel int     `json:"parallel,omitempty"`
	Exports  int     `json:"exports,omitempty"`
	InFlight int     `json:"in_flight,omitempty"`
	Target   float64 `json:"target,omitempty"`

	// The start-up section (7): the block objects in the bucket; for
	// objbacker, seconds from its start to the first byte served (after
	// Probes connections), to its "serving" line and to its "listing
	// complete" line (Listed), Seconds being the listing's own list_time;
	// for the serial baseline, Seconds = Listed = its whole listing, in
	// Pages pages. Keys counts every key listed; Listings are objbacker's
	// List calls, ListsInFlight the most of them side by side.
	Objects       int64   `json:"objects,omitempty"`
	FirstByte     float64 `json:"first_byte_s,omitempty"`
	Probes        int     `json:"probes,omitempty"`
	Serving       float64 `json:"serving_s,omitempty"`
	Listed        float64 `json:"listed_s,omitempty"`
	Keys          int64   `json:"keys,omitempty"`
	Listings      int     `json:"listings,omitempty"`
	ListsInFlight int     `json:"lists_in_flight,omitempty"`
	Pages         int     `json:"pages,omitempty"`
}

type pidList []int

func (p *pidList) String() string { return fmt.Sprint(*p) }
func (p *pidList) Set(s string) error {
	for f := range strings.SplitSeq(s, ",") {
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 0 {
			return fmt.Errorf("bad pid %q", f)
		}
		*p = append(*p, pid)
	}
	return nil
}

type runOpts struct {
	rec                   record
	records, result, time string
	servers, also         pidList
	waitExit              bool
	maxOther, quietMax    float64
	quietWait, latency    time.Duration
}

func runMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var o runOpts
	fs.StringVar(&o.records, "records", "", "append the record to this JSONL file")
	fs.StringVar(&o.rec.Section, "section", "", "section id")
	fs.StringVar(&o.rec.Row, "row", "", "row name")
	fs.StringVar(&o.rec.Subject, "subject", "", "what is measured")
	fs.IntVar(&o.rec.Rep, "rep", 1, "repeat number")
	fs.IntVar(&o.rec.Attempt, "attempt", 1, "attempt number (a disturbed phase is repeated)")
	fs.Int64Var(&o.rec.Limit, "limit", 0, "peak RSS target in bytes")
	fs.DurationVar(&o.latency, "latency", -1, "latency sweep: the store's latency")
	fs.IntVar(&o.rec.Parallel, "parallel", 0, "latency sweep: objbacker's --parallel")
	fs.IntVar(&o.rec.Exports, "exports", 0, "latency sweep: exports read or written at once")
	fs.IntVar(&o.rec.InFlight, "in-flight", 0, "latency sweep: blocks in flight the bound assumes (default --parallel)")
	fs.Float64Var(&o.rec.Target, "target", 0, "latency sweep: least fraction of the bound (0: no target)")
	fs.Var(&o.servers, "server", "PID[,PID] of the subject's server processes")
	fs.Var(&o.also, "also", "PID[,PID] of our other processes (MinIO)")
	fs.StringVar(&o.result, "result", "", "JSON the command writes: fio --output or bench s3 --out")
	fs.StringVar(&o.time, "time", "client", "throughput over the client's own time (client) or the phase's wall time (wall)")
	fs.BoolVar(&o.waitExit, "wait-exit", false, "after the command, wait for the servers to exit (an unmount that flushes)")
	fs.Float64Var(&o.maxOther, "max-other", 0.25, "cores other processes may use before the phase counts as disturbed")
	fs.Float64Var(&o.quietMax, "quiet", 0.15, "cores of other processes below which the machine counts as quiet")
	fs.DurationVar(&o.quietWait, "quiet-wait", 0, "wait up to this long for a quiet machine before starting")
	if err := fs.Parse(args); err != nil {
		return usageErr(err.Error())
	}
	if o.records == "" || o.result == "" || fs.NArg() == 0 || (o.time != "client" && o.time != "wall") {
		return usageErr("run needs --records, --result, --time client|wall and a command after --")
	}
	if o.latency >= 0 {
		if o.rec.Parallel <= 0 || o.rec.Exports <= 0 {
			return usageErr("--latency needs --parallel and --exports")
		}
		o.rec.Latency = o.latency.String()
		if o.rec.InFlight == 0 {
			o.rec.InFlight = o.rec.Parallel
		}
	}
	rec, err := runPhase(ctx, o, fs.Args())
	if err != nil {
		return err
	}
	if err := appendRecord(o.records, rec); err != nil {
		return err
	}
	gib := float64(rec.Bytes) / (1 << 30)
	fmt.Fprintf(os.Stderr, "  %-8s %-24s %-10s %7.1f MiB/s %8.0f IOPS  p99 %7.2f ms  CPU s/GiB server %.2f client %.2f  other %.2f cores%s\n",
		rec.Section, rec.Row, rec.Subject, rec.MiBs, rec.IOPS, rec.P99ms, rec.ServerCPU/gib, rec.ClientCPU/gib, rec.OtherCores, stolenNote(rec))
	if rec.Stolen {
		return errStolen
	}
	return nil
}

func stolenNote(r record) string {
	if !r.Stolen {
		return ""
	}
	return fmt.Sprintf("  DISTURBED (other %.2f, steal %.2f cores)", r.OtherCores, r.StealCores)
}

func runPhase(ctx context.Context, o runOpts, argv []string) (record, error) {
	rec := o.rec
	ours := append(append(pidList{}, o.servers...), o.also...)
	waited, busy := waitQuiet(ours, o.quietMax, o.quietWait)
	rec.QuietWait = waited.Seconds()
	if busy >= o.quietMax && o.quietWait > 0 {
		fmt.Fprintf(os.Stderr, "  warning: still %.2f cores busy elsewhere after waiting %s\n", busy, waited.Round(time.Second))
	}

	servers, err := watch(o.servers)
	if err != nil {
		return rec, err
	}
	also, err := watch(o.also)
	if err != nil {
		return rec, err
	}
	sys0, err := readSystem()
	if err != nil {
		return rec, err
	}
	self0 := selfCPU()
	stop := sampleEvery(100*time.Millisecond, servers, also)

	start := time.Now()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	runErr := cmd.Run()
	if runErr == nil && o.waitExit {
		runErr = waitExited(ctx, servers)
	}
	wall := time.Since(start).Seconds()
	stop()
	sys1, err := readSystem()
	if err != nil {
		return rec, err
	}
	if runErr != nil {
		return rec, fmt.Errorf("%s: %w", strings.Join(argv, " "), runErr)
	}

	rec.Wall = wall
	rec.ServerCPU = servers.cpu()
	rec.AlsoCPU = also.cpu()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rec.ClientCPU = rusageSeconds(ru)
	}
	ourCPU := rec.ServerCPU + rec.AlsoCPU + rec.ClientCPU + (selfCPU() - self0)
	rec.OtherCores = max(0, (sys1.busy-sys0.busy)-ourCPU) / wall
	rec.StealCores = (sys1.steal - sys0.steal) / wall
	rec.Stolen = rec.OtherCores > o.maxOther || rec.StealCores > o.maxOther
	rec.PeakRSS = servers.peakRSS()

	m, err := readResult(o.result)
	if err != nil {
		return rec, err
	}
	rec.Bytes, rec.Seconds, rec.IOPS, rec.P99ms = m.bytes, m.seconds, m.iops, m.p99ms
	if o.time == "wall" {
		rec.Seconds = wall
		rec.IOPS = float64(m.ops) / wall
	}
	if rec.Bytes == 0 || rec.Seconds <= 0 {
		return rec, fmt.Errorf("%s: no I/O measured", o.result)
	}
	rec.MiBs = float64(rec.Bytes) / rec.Seconds / (1 << 20)
	return rec, nil
}

func appendRecord(path string, rec record) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(append(data, '\n'))
	return errors.Join(err, f.Close())
}

// watchedProc follows one process's CPU and peak RSS. A process that exits
// keeps its last sample, so a server that stops at the end of a phase (an
// unmounted s3backer) is counted up to within one sampling period.
type watchedProc struct {
	pid         int
	first, last float64
	hwm         int64
	gone        bool
}

type procSet struct {
	mu    sync.Mutex
	procs []*watchedProc
}

func watch(pids []int) (*procSet, error) {
	s := &procSet{}
	for _, pid := range pids {
		cpu, exited, err := procCPU(pid)
		if err != nil || exited {
			return nil, fmt.Errorf("process %d is not running", pid)
		}
		s.procs = append(s.procs, &watchedProc{pid: pid, first: cpu, last: cpu})
	}
	s.sample()
	return s, nil
}

func (s *procSet) sample() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.procs {
		if p.gone {
			continue
		}
		cpu, exited, err := procCPU(p.pid)
		if err != nil {
			p.gone = true
			continue
		}
		p.last, p.gone = cpu, exited
		if hwm, err := procHWM(p.pid); err == nil {
			p.hwm = max(p.hwm, hwm)
		}
	}
}

func (s *procSet) cpu() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var sum float64
	for _, p := range s.procs {
		sum += p.last - p.first
	}
	return sum
}

func (s *procSet) peakRSS() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var peak int64
	for _, p := range s.procs {
		peak = max(peak, p.hwm)
	}
	return peak
}

func (s *procSet) allGone() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.procs {
		if !p.gone {
			return false
		}
	}
	return true
}

// sampleEvery samples the sets until the returned stop is called, which
// takes a last sample of whatever still runs.
func sampleEvery(period time.Duration, sets ...*procSet) (stop func()) {
	sampleAll := func() {
		for _, s := range sets {
			s.sample()
		}
	}
	stopTicking := progressEvery(period, sampleAll)
	return func() {
		stopTicking()
		sampleAll()
	}
}

// progressEvery calls fn every period until stopped.
func progressEvery(period time.Duration, fn func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fn()
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// waitExited waits for every server to exit; an unmounted FUSE server
// finishes its uploads before it does.
func waitExited(ctx context.Context, s *procSet) error {
	deadline := time.Now().Add(10 * time.Minute)
	for !s.allGone() {
		if time.Now().After(deadline) {
			return fmt.Errorf("servers still running 10 minutes after the command")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		s.sample()
	}
	return nil
}
