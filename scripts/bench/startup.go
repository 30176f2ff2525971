package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Section 7 (issue #16): what a start costs for a bucket of many blocks.
//
//	bench fill-blocks   puts N block objects spread evenly over a device
//	bench list-serial   lists a bucket one page after another (the baseline)
//	bench startup       starts objbacker serve and times its first served
//	                    byte and its complete listing
//
// The blocks of a fill of N objects are block(i) = i × D / N, i < N, on a
// device of D blocks: spread evenly, as a file system spreads its writes,
// and the fill of N contains the fill of N/10 (block(10 j) at N is block(j)
// at N/10), so one bucket grows from 10^3 to 10^6 objects.

// spreadBlock is the i-th of n blocks spread evenly over a device of
// blocks blocks.
func spreadBlock(i, n, blocks int64) int64 { return i * blocks / n }

// blockContent fills buf with block n's data: random-looking, so that
// neither side can compress it or take it for zeros, and known to the
// probe that checks a served block.
func blockContent(n int64, buf []byte) {
	r := rand.New(rand.NewPCG(uint64(n), 0x6f626a6261636b72))
	for i := 0; i+8 <= len(buf); i += 8 {
		binary.LittleEndian.PutUint64(buf[i:], r.Uint64())
	}
}

type startupFlags struct {
	endpoint, bucket, prefix string
	blockSize, deviceBlocks  int64
	count, after             int64
	conc                     int
	latency                  time.Duration
	// The record's coordinates and the disturbance check, as bench run's.
	records               string
	rep, attempt          int
	also                  pidList
	maxOther, quietMax    float64
	quietWait             time.Duration
	addr, export, logPath string
	timeout               time.Duration
}

func (o *startupFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&o.endpoint, "endpoint", "", "S3 endpoint (default $OBJBACKER_TEST_S3_ENDPOINT)")
	fs.StringVar(&o.bucket, "bucket", "", "bucket")
	fs.StringVar(&o.prefix, "prefix", "", "key prefix (with its slash)")
	fs.Int64Var(&o.blockSize, "block-size", 4096, "block (object) size in bytes")
	fs.Int64Var(&o.deviceBlocks, "device-blocks", 1<<20, "blocks of the device the objects are spread over")
	fs.Int64Var(&o.count, "count", 1000, "block objects in the bucket (fill: after the fill)")
	fs.Int64Var(&o.after, "after", 0, "fill-blocks: objects a fill of this count already put")
	fs.IntVar(&o.conc, "conc", 64, "fill-blocks: PUTs in flight")
	fs.DurationVar(&o.latency, "latency", 50*time.Millisecond, "list-serial: wait before each page, as objbacker's ?latency= store does")
	fs.StringVar(&o.records, "records", "", "append the record to this JSONL file")
	fs.IntVar(&o.rep, "rep", 1, "repeat number")
	fs.IntVar(&o.attempt, "attempt", 1, "attempt number (a disturbed phase is repeated)")
	fs.Var(&o.also, "also", "PID[,PID] of our other processes (MinIO)")
	fs.Float64Var(&o.maxOther, "max-other", 0.25, "cores other processes may use before the phase counts as disturbed")
	fs.Float64Var(&o.quietMax, "quiet", 0.15, "cores of other processes below which the machine counts as quiet")
	fs.DurationVar(&o.quietWait, "quiet-wait", 0, "wait up to this long for a quiet machine before starting")
	fs.StringVar(&o.addr, "addr", "", "startup: the NBD address serve listens on")
	fs.StringVar(&o.export, "export", "d", "startup: the export to read")
	fs.StringVar(&o.logPath, "log", "", "startup: serve's log file (JSON lines), appended to")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "startup: give up if the listing is not complete by then")
}

func fillBlocksMain(ctx context.Context, args []string) error {
	o, rest, err := parseStartup("fill-blocks", args)
	if err != nil {
		return err
	}
	if o.bucket == "" || len(rest) > 0 || o.count > o.deviceBlocks || o.after > o.count {
		return usageErr("fill-blocks --bucket B --device-blocks D --count N [--after M] (M ≤ N ≤ D)")
	}
	client, err := newS3Client(ctx, o.endpoint, o.conc)
	if err != nil {
		return err
	}
	meta := map[string]string{
		"s3backer-blocksize": strconv.FormatInt(o.blockSize, 10),
		"s3backer-filesize":  strconv.FormatInt(o.deviceBlocks*o.blockSize, 10),
	}
	// i's block is already there when i × after / count is a whole j:
	// block(i) at count is block(j) at after.
	already := func(i int64) bool { return o.after > 0 && i*o.after%o.count == 0 }
	var next, put atomic.Int64
	errs := make(chan error, o.conc)
	var wg sync.WaitGroup
	start := time.Now()
	stopProgress := progressEvery(10*time.Second, func() {
		fmt.Fprintf(os.Stderr, "  fill-blocks: %d objects put in %s\n", put.Load(), time.Since(start).Round(time.Second))
	})
	for range o.conc {
		wg.Go(func() {
			buf := make([]byte, o.blockSize)
			for {
				i := next.Add(1) - 1
				if i >= o.count || ctx.Err() != nil {
					return
				}
				if already(i) {
					continue
				}
				n := spreadBlock(i, o.count, o.deviceBlocks)
				blockContent(n, buf)
				if err := putBlock(ctx, client, o.bucket, fmt.Sprintf("%s%08x", o.prefix, n), buf, meta); err != nil {
					errs <- fmt.Errorf("put block %d: %w", n, err)
					return
				}
				put.Add(1)
			}
		})
	}
	wg.Wait()
	stopProgress()
	close(errs)
	if err := errors.Join(<-errs, ctx.Err()); err != nil {
		return err
	}
	took := time.Since(start)
	fmt.Fprintf(os.Stderr, "  fill-blocks: %d objects of %d bytes put in %s (%.0f/s), %d in the bucket\n",
		put.Load(), o.blockSize, took.Round(time.Millisecond), float64(put.Load())/took.Seconds(), o.count)
	return nil
}

func parseStartup(name string, args []string) (startupFlags, []string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var o startupFlags
	o.register(fs)
	if err := fs.Parse(args); err != nil {
		return o, nil, usageErr(err.Error())
	}
	return o, fs.Args(), nil
}

// phase measures what bench run measures of a phase that is not a command:
// the CPU of the servers and of our other processes, and the CPU other
// processes took (a disturbed phase is repeated).
type phase struct {
	rec          record
	servers      *procSet
	also         *procSet
	sys0         systemTimes
	self0        float64
	start        time.Time
	stopSampling func()
}

func startPhase(o startupFlags, row, subject string, servers []int) (*phase, error) {
	rec := record{Section: "startup", Row: row, Subject: subject, Rep: o.rep, Attempt: o.attempt, Objects: o.count}
	waited, busy := waitQuiet(append(append(pidList{}, servers...), o.also...), o.quietMax, o.quietWait)
	rec.QuietWait = waited.Seconds()
	if busy >= o.quietMax && o.quietWait > 0 {
		fmt.Fprintf(os.Stderr, "  warning: still %.2f cores busy elsewhere after waiting %s\n", busy, waited.Round(time.Second))
	}
	p := &phase{rec: rec}
	var err error
	if p.servers, err = watch(servers); err != nil {
		return nil, err
	}
	if p.also, err = watch(o.also); err != nil {
		return nil, err
	}
	if p.sys0, err = readSystem(); err != nil {
		return nil, err
	}
	p.self0 = selfCPU()
	p.stopSampling = sampleEvery(100*time.Millisecond, p.servers, p.also)
	p.start = time.Now()
	return p, nil
}

// addServer watches a server started after the phase began (objbacker,
// started by the phase itself).
func (p *phase) addServer(pid int) error {
	s, err := watch([]int{pid})
	if err != nil {
		return err
	}
	p.servers.mu.Lock()
	p.servers.procs = append(p.servers.procs, s.procs...)
	p.servers.mu.Unlock()
	return nil
}

// end closes the measurement; client is the CPU of children that are not
// servers (none here but ourselves).
func (p *phase) end(o startupFlags) (record, error) {
	wall := time.Since(p.start).Seconds()
	p.stopSampling()
	sys1, err := readSystem()
	if err != nil {
		return p.rec, err
	}
	rec := p.rec
	rec.Wall = wall
	rec.ServerCPU = p.servers.cpu()
	rec.AlsoCPU = p.also.cpu()
	rec.ClientCPU = selfCPU() - p.self0
	ours := rec.ServerCPU + rec.AlsoCPU + rec.ClientCPU
	rec.OtherCores = max(0, (sys1.busy-p.sys0.busy)-ours) / wall
	rec.StealCores = (sys1.steal - p.sys0.steal) / wall
	rec.Stolen = rec.OtherCores > o.maxOther || rec.StealCores > o.maxOther
	rec.PeakRSS = p.servers.peakRSS()
	return rec, nil
}

func finishRecord(o startupFlags, rec record, line string) error {
	if o.records != "" {
		if err := appendRecord(o.records, rec); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "  startup  %-16s %-12s %s  CPU s: server %.2f MinIO %.2f  other %.2f cores%s\n",
		rec.Row, rec.Subject, line, rec.ServerCPU, rec.AlsoCPU, rec.OtherCores, stolenNote(rec))
	if rec.Stolen {
		return errStolen
	}
	return nil
}

func startupRow(n int64) string { return fmt.Sprintf("%d objects", n) }

// listSerialMain lists the bucket one ListObjectsV2 page after another,
// waiting the latency before each page as objbacker's ?latency= store does
// (objstore/latency.go): the start-up section's baseline.
func listSerialMain(ctx context.Context, args []string) error {
	o, rest, err := parseStartup("list-serial", args)
	if err != nil {
		return err
	}
	if o.bucket == "" || o.records == "" || len(rest) > 0 {
		return usageErr("list-serial --bucket B --count N --records R [--latency D]")
	}
	client, err := newS3Client(ctx, o.endpoint, 1)
	if err != nil {
		return err
	}
	p, err := startPhase(o, startupRow(o.count), "serial LIST", nil)
	if err != nil {
		return err
	}
	var keys, blocks int64
	pages := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aws.String(o.bucket), Prefix: aws.String(o.prefix)})
	for pages.HasMorePages() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(o.latency):
		}
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("listing s3://%s/%s: %w", o.bucket, o.prefix, err)
		}
		p.rec.Pages++
		for _, obj := range page.Contents {
			keys++
			if blockKey.MatchString(aws.ToString(obj.Key)[len(o.prefix):]) {
				blocks++
			}
		}
	}
	took := time.Since(p.start)
	rec, err := p.end(o)
	if err != nil {
		return err
	}
	if blocks != o.count {
		return fmt.Errorf("s3://%s/%s lists %d block objects, want %d", o.bucket, o.prefix, blocks, o.count)
	}
	rec.Seconds, rec.Listed, rec.Keys = took.Seconds(), took.Seconds(), keys
	return finishRecord(o, rec, fmt.Sprintf("listed %d keys in %d pages in %.2f s", keys, rec.Pages, rec.Seconds))
}

// serveLog is what the start-up section reads in serve's JSON log lines.
type serveLog struct {
	Time     time.Time       `json:"time"`
	Msg      string          `json:"msg"`
	Export   string          `json:"export"`
	Blocks   int64           `json:"blocks_present"`
	Keys     int64           `json:"keys"`
	Listings int             `json:"listings"`
	InFlight int             `json:"in_flight"`
	Took     json.RawMessage `json:"list_time"`
}

// duration reads a slog duration: nanoseconds in JSON, a string in text.
func (l serveLog) duration() (time.Duration, error) {
	var ns int64
	if err := json.Unmarshal(l.Took, &ns); err == nil {
		return time.Duration(ns), nil
	}
	var s string
	if err := json.Unmarshal(l.Took, &s); err != nil {
		return 0, fmt.Errorf("list_time %s", l.Took)
	}
	return time.ParseDuration(s)
}

// startupMain starts objbacker serve (the command after --, its log
// appended to --log) and measures, from the moment it starts: the first
// byte served, by a client that connects again and again until it reads
// block --block whole and finds that block's content (blockContent); the
// "serving" line; and the "listing complete" line, with the listing's own
// time (list_time). Then it stops serve with SIGTERM, which must exit 0.
func startupMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("startup", flag.ContinueOnError)
	var o startupFlags
	o.register(fs)
	block := fs.Int64("block", -1, "the block the probe reads (default the last of the fill)")
	if err := fs.Parse(args); err != nil {
		return usageErr(err.Error())
	}
	argv := fs.Args()
	if o.addr == "" || o.logPath == "" || o.records == "" || len(argv) == 0 {
		return usageErr("startup --addr HOST:PORT --log FILE --records R --count N [--block B] -- OBJBACKER serve ...")
	}
	if *block < 0 {
		*block = spreadBlock(o.count-1, o.count, o.deviceBlocks)
	}
	want := make([]byte, o.blockSize)
	blockContent(*block, want)

	logFile, err := os.OpenFile(o.logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	logStart, err := logFile.Seek(0, 2)
	if err != nil {
		return err
	}
	p, err := startPhase(o, startupRow(o.count), "objbacker", nil)
	if err != nil {
		return err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return err
	}
	t0 := p.start
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	if err := p.addServer(cmd.Process.Pid); err != nil {
		return err
	}

	probeCtx, cancelProbe := context.WithCancel(ctx)
	defer cancelProbe()
	type probeResult struct {
		after    time.Duration
		attempts int
		err      error
	}
	probed := make(chan probeResult, 1)
	go func() {
		var last error
		for attempt := 1; ; attempt++ {
			got, err := nbdRead(o.addr, o.export, uint64(*block*o.blockSize), uint32(o.blockSize), 10*time.Second)
			switch {
			case err == nil && bytes.Equal(got, want):
				probed <- probeResult{after: time.Since(t0), attempts: attempt}
				return
			case err == nil:
				// Served, but not the block's data: a wrong answer, not a
				// slow one.
				probed <- probeResult{err: fmt.Errorf("block %d served with other content than was put (%d attempts)", *block, attempt)}
				return
			}
			last = err
			select {
			case <-probeCtx.Done():
				probed <- probeResult{err: fmt.Errorf("no byte served after %d attempts: %w", attempt, last)}
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()

	// Follow the log until the probe has its byte and the listing is
	// complete.
	var serving, complete *serveLog
	var first *probeResult
	deadline := time.After(o.timeout)
	rd, err := os.Open(o.logPath)
	if err != nil {
		return err
	}
	defer rd.Close()
	if _, err := rd.Seek(logStart, 0); err != nil {
		return err
	}
	lines := bufio.NewReader(rd)
	var partial []byte
	for first == nil || complete == nil {
		for {
			chunk, err := lines.ReadBytes('\n')
			partial = append(partial, chunk...)
			if err != nil {
				break // the rest of a line comes later
			}
			var l serveLog
			if json.Unmarshal(partial, &l) == nil {
				switch l.Msg {
				case "serving":
					serving = &l
				case "listing complete":
					complete = &l
				}
			}
			partial = partial[:0]
		}
		select {
		case r := <-probed:
			if r.err != nil {
				return r.err
			}
			first = &r
		case err := <-exited:
			stopped = true
			return fmt.Errorf("serve exited before its listing completed (%v); see %s", err, o.logPath)
		case <-deadline:
			return fmt.Errorf("the listing is not complete after %s; see %s", o.timeout, o.logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	rec, err := p.end(o)
	if err != nil {
		return err
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			return fmt.Errorf("serve exited with %v after SIGTERM; see %s", err, o.logPath)
		}
	case <-time.After(time.Minute):
		return fmt.Errorf("serve still running a minute after SIGTERM; see %s", o.logPath)
	}
	took, err := complete.duration()
	if err != nil {
		return err
	}
	if complete.Blocks != o.count {
		return fmt.Errorf("serve's listing found %d blocks, the bucket holds %d", complete.Blocks, o.count)
	}
	rec.FirstByte = first.after.Seconds()
	rec.Probes = first.attempts
	if serving != nil {
		rec.Serving = serving.Time.Sub(t0).Seconds()
	}
	rec.Listed = complete.Time.Sub(t0).Seconds()
	rec.Seconds = took.Seconds()
	rec.Keys, rec.Listings, rec.ListsInFlight = complete.Keys, complete.Listings, complete.InFlight
	return finishRecord(o, rec, fmt.Sprintf("first byte %.3f s (%d probes), serving %.3f s, listed %d keys in %d listings, at most %d side by side, in %.2f s (%.2f s after start)",
		rec.FirstByte, rec.Probes, rec.Serving, rec.Keys, rec.Listings, rec.ListsInFlight, rec.Seconds, rec.Listed))
}
