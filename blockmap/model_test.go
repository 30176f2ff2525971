package blockmap

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/objbacker/objbacker/internal/bytesize"
	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/memstore"
	"github.com/objbacker/objbacker/objstore/storetest"
)

// TestModel runs rounds of concurrent writes (partial, whole-block, across
// blocks, FUA, zeros, whole buffers), reads (sequential ones start
// read-ahead), lends, trims, zeroings and syncs on a device with a tiny
// cache, over a store that delays every request and fails 5 % of them,
// and checks every answer against a model of what the device may hold.
// Each round has epochs; an epoch ends with a Close racing late writes, or
// with an Abort at a random point (a crash), and is checked by reopening
// the bucket without faults: every sector must hold what the model allows
// (after a crash: every write covered by a successful Sync or FUA, others
// old or new) and each block object must be exactly the block's bytes.
//
// A round's seed fixes its shape, the workers' operations and the store's
// faults; a failure names its seed. The interleaving is the scheduler's, so
// a seed may take a few runs to fail again. OBJBACKER_MODEL_SEED sets the
// first seed (one round) and OBJBACKER_MODEL_ROUNDS the number of rounds,
// for longer runs by hand:
//
//	OBJBACKER_MODEL_ROUNDS=500 go test -race -run 'Model$' ./blockmap/
func TestModel(t *testing.T) {
	first, rounds := uint64(1), 8
	if testing.Short() {
		rounds = 4
	}
	if s := os.Getenv("OBJBACKER_MODEL_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("OBJBACKER_MODEL_SEED: %v", err)
		}
		first, rounds = v, 1
	}
	if s := os.Getenv("OBJBACKER_MODEL_ROUNDS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("OBJBACKER_MODEL_ROUNDS: %v", err)
		}
		rounds = v
	}
	for seed := first; seed < first+uint64(rounds); seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			newModelRound(t, seed).run()
			if t.Failed() {
				t.Logf("reproduce with OBJBACKER_MODEL_SEED=%d go test -race -run 'Model$' ./blockmap/", seed)
			}
		})
	}
}

// The content of every written sector names the write and the sector, so
// a read tells which write each of its sectors comes from: content 0 is
// zeros (never written, trimmed, zeroed), content c > 0 is write c's.

func fillSector(p []byte, content uint64, sector int64) {
	binary.LittleEndian.PutUint64(p[0:], content)
	binary.LittleEndian.PutUint64(p[8:], uint64(sector))
	x := content*0x9e3779b97f4a7c15 ^ uint64(sector)*0xbf58476d1ce4e5b9
	for i := 16; i < SectorSize; i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(p[i:], x)
	}
}

// sectorContent decodes a sector read at sector; ok is false for bytes no
// write of the model wrote there.
func sectorContent(p []byte, sector int64) (content uint64, ok bool) {
	if isZero(p) {
		return 0, true
	}
	content = binary.LittleEndian.Uint64(p)
	if content == 0 || binary.LittleEndian.Uint64(p[8:]) != uint64(sector) {
		return content, false
	}
	var want [SectorSize]byte
	fillSector(want[:], content, sector)
	return content, bytes.Equal(p, want[:])
}

// pending is the end of an operation still under way.
const pending = math.MaxUint64

// modelOp is one operation on the device, in the model's logical time.
type modelOp struct {
	seq    uint64 // the content written, by writes not of zeros
	worker int
	kind   string
	off, n int64
	zero   bool // writes zeros
	fua    bool
	// start and end are ticks of the model's clock taken before the call
	// and after its return: the operation took effect in between.
	start, end uint64
	ok         bool
	err        error
}

func (o *modelOp) content() uint64 {
	if o.zero {
		return 0
	}
	return o.seq
}

func (o *modelOp) String() string {
	s := fmt.Sprintf("#%d w%d %s [%d,+%d)", o.seq, o.worker, o.kind, o.off, o.n)
	if o.fua {
		s += " fua"
	}
	end := "…"
	if o.end != pending {
		end = strconv.FormatUint(o.end, 10)
	}
	s += fmt.Sprintf(" t%d-%s", o.start, end)
	switch {
	case o.err != nil:
		s += fmt.Sprintf(" err=%v", o.err)
	case o.end != pending && !o.ok:
		s += " failed"
	}
	return s
}

// model is what the device may hold: for each sector the writes that may
// still be read. A write that failed may or may not have taken effect;
// writes that overlap in time may take effect in either order. A read may
// return the content of a write w that started before the read ended,
// unless a write started after w ended, and took effect before the read
// started: it succeeded before, or an earlier read saw it. For a crash the
// same rule holds with "took effect" narrowed to "is durable": covered by
// a successful FUA, or ended before a successful Sync started.
type model struct {
	blockSize int64 // for messages: the model itself knows only sectors

	mu      sync.Mutex
	clock   uint64
	seq     uint64
	sectors [][]candidate
	// syncedBefore is the start of the latest successful Sync: every write
	// that succeeded before it is durable.
	syncedBefore uint64
	inflight     map[*modelOp]bool
	trace        []*modelOp
	// events are the requests that reached the store, for messages.
	events []storeEvent
}

// candidate is a write that a sector may hold.
type candidate struct {
	*modelOp
	// seen is when a read that returned this write's content in the sector
	// ended (pending: none did). Zeros do not count: several writes of
	// zeros look the same.
	seen uint64
}

// storeEvent is a request as the store carried it out, at a tick of the
// model's clock.
type storeEvent struct {
	tick uint64
	key  string
	what string
}

// recordEvent notes a request the store carried out.
func (m *model) recordEvent(key, what string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clock++
	m.events = append(m.events, storeEvent{m.clock, key, what})
}

// history describes the operations on block blk and its store requests,
// in time order, the last ones of the epoch.
func (m *model) history(blk int64) string {
	type line struct {
		tick uint64
		text string
	}
	var lines []line
	bs := m.blockSize
	for _, o := range m.trace {
		if o.off < (blk+1)*bs && o.off+o.n > blk*bs {
			lines = append(lines, line{o.start, o.String()})
		}
	}
	key := BlockKey(blk)
	for _, e := range m.events {
		if e.key == key {
			lines = append(lines, line{e.tick, fmt.Sprintf("t%d store: %s", e.tick, e.what)})
		}
	}
	slices.SortStableFunc(lines, func(a, b line) int { return cmp.Compare(a.tick, b.tick) })
	lines = lines[max(0, len(lines)-60):]
	var b strings.Builder
	fmt.Fprintf(&b, "writes that succeeded before t%d are durable; the last operations on block %d and its store requests:", m.syncedBefore, blk)
	for _, l := range lines {
		fmt.Fprintf(&b, "\n\t%s", l.text)
	}
	return b.String()
}

func newModel(g Geometry) *model {
	sectors := g.Size / SectorSize
	m := &model{blockSize: g.BlockSize, sectors: make([][]candidate, sectors), inflight: make(map[*modelOp]bool)}
	m.reset(make([]uint64, sectors))
	return m
}

// reset makes contents, as read back after reopening, the model's only
// and durable state.
func (m *model) reset(contents []uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clock++
	for s, c := range contents {
		o := &modelOp{seq: c, worker: -1, kind: "as reopened", zero: c == 0, fua: true, start: m.clock, end: m.clock, ok: true}
		m.sectors[s] = []candidate{{o, pending}}
	}
	m.trace = m.trace[:0]
	m.events = m.events[:0]
}

func (m *model) durable(o *modelOp) bool {
	return o.ok && o.end != pending && (o.fua || o.end < m.syncedBefore)
}

// begin starts an operation; a write is a candidate for its sectors from
// now on.
func (m *model) begin(o *modelOp, write bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clock++
	m.seq++
	o.seq, o.start, o.end = m.seq, m.clock, pending
	m.inflight[o] = true
	m.trace = append(m.trace, o)
	if write {
		for s := o.off / SectorSize; s < (o.off+o.n)/SectorSize; s++ {
			m.sectors[s] = append(m.sectors[s], candidate{o, pending})
		}
	}
}

// end records the outcome of o.
func (m *model) end(o *modelOp, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clock++
	o.end, o.ok, o.err = m.clock, err == nil, err
	delete(m.inflight, o)
	if o.kind == "sync" && o.ok {
		m.syncedBefore = max(m.syncedBefore, o.start)
		m.prune()
	}
}

// prune drops the writes no read and no crash can return any more: those
// a durable write started after and ended before every operation under
// way started.
func (m *model) prune() {
	low := m.clock
	for o := range m.inflight {
		low = min(low, o.start)
	}
	for s, hist := range m.sectors {
		var cover uint64 // the latest start of a durable write ended before low
		for _, f := range hist {
			if m.durable(f.modelOp) && f.end < low {
				cover = max(cover, f.start)
			}
		}
		kept := hist[:0]
		for _, e := range hist {
			if e.end == pending || e.end >= cover {
				kept = append(kept, e)
			}
		}
		clear(hist[len(kept):]) // for the collector
		m.sectors[s] = kept
	}
}

// allowed reports whether a read of sector s running from start to end
// may return content; with crash, whether a device reopened after a crash
// may (start and end are then the present).
func (m *model) allowed(s int64, content uint64, start, end uint64, crash bool) (*candidate, bool) {
	hist := m.sectors[s]
	for i, e := range hist {
		if e.content() != content || e.start >= end {
			continue
		}
		superseded := false
		for _, f := range hist {
			if e.end == pending || e.end >= f.start {
				continue // f is not known to have come after e
			}
			if crash && m.durable(f.modelOp) ||
				!crash && (f.ok && f.end < start || f.seen < start) {
				superseded = true
				break
			}
		}
		if !superseded {
			return &hist[i], true
		}
	}
	return nil, false
}

// endRead records the outcome of a read and checks the bytes p it read.
// The read counts as under way until it is checked, so that prune keeps
// what it may return.
func (m *model) endRead(o *modelOp, p []byte, err error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clock++
	o.end, o.ok, o.err = m.clock, err == nil, err
	delete(m.inflight, o)
	if err != nil {
		return nil
	}
	return m.check(o, p, false)
}

// checkReopened checks the bytes p of the whole device read after
// reopening it; crash selects the rule for a device that was not closed.
func (m *model) checkReopened(p []byte, crash bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clock++
	kind := "read after a clean close"
	if crash {
		kind = "read after a crash"
	}
	o := &modelOp{worker: -1, kind: kind, n: int64(len(p)), start: m.clock, end: m.clock + 1, ok: true}
	return m.check(o, p, crash)
}

// check verifies the bytes p that op read at op.off; crash selects the
// rule for a device reopened after a crash. Called with m.mu held.
func (m *model) check(op *modelOp, p []byte, crash bool) error {
	for i := int64(0); i < int64(len(p)); i += SectorSize {
		s := (op.off + i) / SectorSize
		c, ok := sectorContent(p[i:i+SectorSize], s)
		if ok {
			if e, ok := m.allowed(s, c, op.start, op.end, crash); ok {
				if c != 0 && !crash {
					e.seen = min(e.seen, op.end)
				}
				continue
			}
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%v: sector %d (block %d, sector %d in it) ", op, s, s*SectorSize/m.blockSize, s%(m.blockSize/SectorSize))
		if !ok {
			fmt.Fprintf(&b, "holds bytes no write wrote there (header %d)", c)
		} else {
			fmt.Fprintf(&b, "holds the content of %s", m.describe(c))
		}
		b.WriteString(", which the model does not allow; its candidates:")
		for _, e := range m.sectors[s] {
			fmt.Fprintf(&b, "\n\t%v", e.modelOp)
			if e.seen != pending {
				fmt.Fprintf(&b, ", read by t%d", e.seen)
			}
		}
		b.WriteString("\n" + m.history(s*SectorSize/m.blockSize))
		return errors.New(b.String())
	}
	return nil
}

func (m *model) describe(content uint64) string {
	if content == 0 {
		return "zeros"
	}
	for _, o := range m.trace {
		if o.seq == content {
			return o.String()
		}
	}
	return fmt.Sprintf("write #%d of an earlier epoch", content)
}

// recorder notes in the model every request that reaches the store it
// wraps, with what it found or did.
type recorder struct {
	objstore.Store
	m *model
}

func (r recorder) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, objstore.Attrs, error) {
	rc, a, err := r.Store.Get(ctx, key, off, n)
	if blk, ok := ParseBlockKey(key); ok {
		what := "GET: " + fmt.Sprint(err)
		if err == nil {
			data, rerr := io.ReadAll(rc)
			rc.Close()
			rc = io.NopCloser(bytes.NewReader(data))
			what = "GET found " + blockContents(data, blk) + fmt.Sprint(rerr)
		}
		r.m.recordEvent(key, what)
	}
	return rc, a, err
}

// blockContents describes block blk's bytes data as runs of sectors and
// the writes they come from.
func blockContents(data []byte, blk int64) string {
	var b strings.Builder
	spb := int64(len(data)) / SectorSize
	var runStart int64
	var runContent string
	for i := int64(0); i <= spb; i++ {
		var c string
		if i < spb {
			content, ok := sectorContent(data[i*SectorSize:][:SectorSize], blk*spb+i)
			switch {
			case !ok:
				c = "garbage"
			case content == 0:
				c = "zeros"
			default:
				c = fmt.Sprintf("#%d", content)
			}
		}
		if i == spb || c != runContent {
			if i > 0 {
				fmt.Fprintf(&b, "%d-%d %s, ", runStart, i-1, runContent)
			}
			runStart, runContent = i, c
		}
	}
	return strings.TrimSuffix(b.String(), ", ")
}

func (r recorder) Put(ctx context.Context, key string, data []byte, opts objstore.PutOptions) (objstore.Attrs, error) {
	a, err := r.Store.Put(ctx, key, data, opts)
	if blk, ok := ParseBlockKey(key); ok {
		what := "PUT stored " + blockContents(data, blk)
		if err != nil {
			what = "PUT: " + err.Error()
		}
		r.m.recordEvent(key, what)
	}
	return a, err
}

func (r recorder) Delete(ctx context.Context, key string) error {
	err := r.Store.Delete(ctx, key)
	if _, ok := ParseBlockKey(key); ok {
		what := "DELETE done"
		if err != nil {
			what = "DELETE: " + err.Error()
		}
		r.m.recordEvent(key, what)
	}
	return err
}

// modelRound is one seed's device, store and workers.
type modelRound struct {
	t    *testing.T
	seed uint64
	rng  *rand.Rand

	mem    *memstore.Store
	faulty *storetest.Faulty
	faults storetest.Faults
	// retrying rounds put objstore.Retrying before the faulty store, as the
	// daemon does, and then no operation may fail; the others see each
	// failure and exercise the device's own retries and EIO paths.
	retrying bool
	store    objstore.Store
	cfg      Config

	workers, ops int // per epoch
	// hot are a few blocks that half the operations go to, so that reads,
	// read-ahead, trims, writes and uploads of one block often overlap.
	hot []int64
	m   *model
}

func newModelRound(t *testing.T, seed uint64) *modelRound {
	rng := rand.New(rand.NewPCG(seed, 0x6d6f64656c))
	bs := []int64{16 << 10, 64 << 10}[rng.IntN(2)]
	g := Geometry{Size: (16 + rng.Int64N(17)) * bs, BlockSize: bs}
	r := &modelRound{t: t, seed: seed, rng: rng, mem: memstore.New(), retrying: seed%2 == 0,
		workers: 3 + rng.IntN(4), ops: 150, m: newModel(g)}
	r.faults = storetest.Faults{
		Fail:      0.05,
		Delay:     time.Duration(20+rng.IntN(200)) * time.Microsecond,
		Slow:      0.05,
		SlowDelay: 5 * time.Millisecond,
		// Retrying does not retry a body that breaks off (issue 14 item
		// 8): that read fails with EIO, which retrying rounds forbid.
		CutBodies: !r.retrying,
	}
	r.faulty = storetest.NewFaulty(recorder{r.mem, r.m}, seed, r.faults)
	r.store = r.faulty
	if r.retrying {
		// Eight attempts: all of them fail once in 4e10 requests.
		r.store = objstore.Retrying(r.faulty, objstore.RetryPolicy{Attempts: 8, BaseDelay: 50 * time.Microsecond, MaxDelay: time.Millisecond}, nil)
	}
	r.cfg = Config{Store: r.store, Geometry: g, Log: slog.New(bugReporter{t}),
		CacheSize: (4 + rng.Int64N(5)) * bs,
		Parallel:  2 + rng.IntN(3),
		ReadAhead: rng.IntN(6) - 1, // -1 off, 0 the default
		// Mostly no write delay, so that only FLUSH and full blocks
		// upload; sometimes a short one, so that partial blocks do too.
		WriteDelay: time.Hour,
	}
	if rng.IntN(3) == 0 {
		r.cfg.WriteDelay = time.Duration(5+rng.IntN(50)) * time.Millisecond
	}
	// Half the rounds serve while the listing runs, through the same
	// faulty store: every block is unknown until it is listed.
	r.cfg.ListInBackground = rng.IntN(2) == 0
	return r
}

func (r *modelRound) String() string {
	return fmt.Sprintf("seed %d: %d blocks of %s, cache %d blocks, parallel %d, read-ahead %d, write delay %v, listing in the background %v, %d workers, retrying %v, store delay %v, hot blocks %v",
		r.seed, r.cfg.Geometry.Blocks(), bytesize.Format(r.cfg.Geometry.BlockSize), r.cfg.CacheSize/r.cfg.Geometry.BlockSize,
		r.cfg.Parallel, r.cfg.ReadAhead, r.cfg.WriteDelay, r.cfg.ListInBackground, r.workers, r.retrying, r.faults.Delay, r.hot)
}

func (r *modelRound) run() {
	r.t.Log(r)
	for e := range 3 {
		crash := r.rng.IntN(3) == 0
		if !r.epoch(e, crash) {
			return
		}
	}
}

// epoch opens the device, lets the workers loose on it, closes it (or
// crashes it at a random point, with crash) and checks the store.
func (r *modelRound) epoch(e int, crash bool) bool {
	t := r.t
	// The device opens with the store failing: a listing broken off must
	// still find every block. An open that fails may leave its mount
	// marker behind (issue 14 item 7), hence Force.
	r.faulty.SetFaults(r.faults)
	cfg := r.cfg
	cfg.Force = true
	var d *Device
	for attempt := 1; ; attempt++ {
		var err error
		if d, err = Open(t.Context(), cfg); err == nil {
			break
		}
		if attempt == 20 {
			t.Errorf("%v: epoch %d: open failed %d times, the last: %v", r, e, attempt, err)
			return false
		}
	}
	r.hot = r.hot[:0]
	for range 2 + r.rng.IntN(3) {
		r.hot = append(r.hot, r.rng.Int64N(r.cfg.Geometry.Blocks()))
	}
	failed0, lost0, cut0 := r.faulty.Failed.Load(), r.faulty.LostAnswers.Load(), r.faulty.CutOff.Load()

	var aborted atomic.Bool
	abortAt := int64(-1)
	if crash {
		abortAt = r.rng.Int64N(int64(r.workers * r.ops))
	}
	var started atomic.Int64
	abortedNow := make(chan struct{})
	var wg sync.WaitGroup
	for i := range r.workers {
		w := &modelWorker{r: r, d: d, id: i, aborted: &aborted, rng: rand.New(rand.NewPCG(r.seed, uint64(e)<<8|uint64(i)))}
		wg.Go(func() {
			for range r.ops {
				if started.Add(1)-1 == abortAt {
					// Before the Abort, so that no operation failing
					// because of it is taken for one failing without cause.
					aborted.Store(true)
					d.Abort()
					close(abortedNow)
				}
				if !w.step() {
					return
				}
			}
		})
	}
	workersDone := make(chan struct{})
	go func() { wg.Wait(); close(workersDone) }()
	stop := watchdog(r, "the workers", 3*time.Minute)
	defer stop()

	var closeErr error
	if crash {
		// The 5 s count from the Abort: on a loaded machine under -race,
		// getting there can take longer than that.
		select {
		case <-workersDone:
		case <-abortedNow:
			select {
			case <-workersDone:
			case <-time.After(5 * time.Second):
				t.Errorf("%v: epoch %d: operations still waiting 5 s after Abort (writers waiting for cache room: issue 14 item 5)", r, e)
			}
		}
		closeErr = d.Close()
		<-workersDone
	} else {
		<-workersDone
		// Close must succeed once the store works again.
		r.faulty.SetFaults(storetest.Faults{Delay: r.faults.Delay})
		// Writes racing Close: each one acknowledged must be stored when
		// Close returns nil.
		late := &modelWorker{r: r, d: d, id: r.workers, aborted: &aborted, rng: rand.New(rand.NewPCG(r.seed, uint64(e)<<8|0xff))}
		lateDone := make(chan struct{})
		go func() {
			defer close(lateDone)
			for late.lateWrite() {
			}
		}()
		closeErr = d.Close()
		<-lateDone
		if closeErr != nil {
			t.Errorf("%v: epoch %d: Close with the store working again: %v", r, e, closeErr)
		}
	}
	t.Logf("epoch %d (crash %v): %d operations, store failures injected %d (answers lost %d, bodies cut %d), close: %v", e, crash,
		started.Load(), r.faulty.Failed.Load()-failed0, r.faulty.LostAnswers.Load()-lost0, r.faulty.CutOff.Load()-cut0, closeErr)
	if t.Failed() {
		return false
	}
	return r.verify(e, closeErr)
}

// watchdog dumps every goroutine and panics if it is not stopped within
// limit: a hang is a failure too, and its stacks are the diagnosis.
func watchdog(r *modelRound, what string, limit time.Duration) (stop func() bool) {
	return time.AfterFunc(limit, func() {
		pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		panic(fmt.Sprintf("%v: %s still running after %v", r, what, limit))
	}).Stop
}

// verify reopens the bucket without faults and checks every sector against
// the model, and every block object against the device's bytes; then the
// bytes read become the model.
func (r *modelRound) verify(e int, closeErr error) bool {
	t := r.t
	crash := closeErr != nil
	ctx := context.Background()
	g := r.cfg.Geometry
	bs := g.BlockSize
	if _, err := r.mem.Stat(ctx, MountMarkerKey); crash != (err == nil) {
		t.Errorf("%v: epoch %d: Close returned %v, and the mount marker is there: %v", r, e, closeErr, err == nil)
		return false
	}
	d, err := Open(ctx, Config{Store: r.mem, CacheSize: 4 * bs, Force: true, ReadAhead: -1, WriteDelay: time.Hour})
	if err != nil {
		t.Errorf("%v: epoch %d: reopen: %v", r, e, err)
		return false
	}
	got := make([]byte, g.Size)
	for off := int64(0); off < g.Size; off += bs {
		if _, err := d.ReadAt(got[off:off+bs], off); err != nil {
			t.Errorf("%v: epoch %d: read after reopening: %v", r, e, err)
			d.Close()
			return false
		}
	}
	if err := d.Close(); err != nil {
		t.Errorf("%v: epoch %d: close after reopening: %v", r, e, err)
	}
	if err := r.m.checkReopened(got, crash); err != nil {
		t.Errorf("%v: epoch %d: %v", r, e, err)
		return false
	}

	// Each block object is the block's bytes, and not all zeros: an upload
	// deletes a zero block's object rather than storing zeros.
	stored := make(map[int64]bool)
	err = r.mem.List(ctx, "", "", func(info objstore.ObjectInfo) error {
		n, ok := ParseBlockKey(info.Key)
		if !ok {
			if info.Key != DescriptorKey && info.Key != MountMarkerKey && info.Key != CleanStopKey {
				t.Errorf("%v: epoch %d: unexpected object %q", r, e, info.Key)
			}
			return nil
		}
		stored[n] = true
		data := objectBytes(t, r.mem, info.Key)
		switch {
		case n >= g.Blocks():
			t.Errorf("%v: epoch %d: object %q beyond the device", r, e, info.Key)
		case !bytes.Equal(data, got[n*bs:(n+1)*bs]):
			t.Errorf("%v: epoch %d: object %q (%d bytes) differs from the block read back", r, e, info.Key, len(data))
		case isZero(data):
			t.Errorf("%v: epoch %d: object %q holds only zeros", r, e, info.Key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for n := range g.Blocks() {
		if !stored[n] && !isZero(got[n*bs:(n+1)*bs]) {
			t.Errorf("%v: epoch %d: block %d has no object but read back as data", r, e, n)
		}
	}
	if t.Failed() {
		return false
	}
	contents := make([]uint64, g.Size/SectorSize)
	for s := range contents {
		contents[s], _ = sectorContent(got[int64(s)*SectorSize:][:SectorSize], int64(s))
	}
	r.m.reset(contents)
	return true
}

// modelWorker issues random operations on the device and checks each.
type modelWorker struct {
	r       *modelRound
	d       *Device
	id      int
	rng     *rand.Rand
	aborted *atomic.Bool
}

// unit is the alignment of one request: the 512-byte sector, or 4 KiB as
// most file systems write.
func (w *modelWorker) unit() int64 {
	if w.rng.IntN(3) == 0 {
		return SectorSize
	}
	return 4096
}

// block picks a block, a hot one half the time.
func (w *modelWorker) block() int64 {
	if w.rng.IntN(2) == 0 {
		return w.r.hot[w.rng.IntN(len(w.r.hot))]
	}
	return w.rng.Int64N(w.r.cfg.Geometry.Blocks())
}

// inBlock picks a range of at most half a block inside one block.
func (w *modelWorker) inBlock() (off, n int64) {
	g := w.r.cfg.Geometry
	u := w.unit()
	per := g.BlockSize / u
	first := w.rng.Int64N(per)
	n = 1 + w.rng.Int64N(min(per-first, per/2))
	return w.block()*g.BlockSize + first*u, n * u
}

// across picks a range of up to three blocks from within a block.
func (w *modelWorker) across() (off, n int64) {
	g := w.r.cfg.Geometry
	u := w.unit()
	first := w.block()*g.BlockSize/u + w.rng.Int64N(g.BlockSize/u)
	n = 1 + w.rng.Int64N(min(g.Size/u-first, 3*g.BlockSize/u))
	return first * u, n * u
}

// wholeBlock picks one block.
func (w *modelWorker) wholeBlock() (off, n int64) {
	return w.block() * w.r.cfg.Geometry.BlockSize, w.r.cfg.Geometry.BlockSize
}

// step runs one random operation; false once the test failed.
func (w *modelWorker) step() bool {
	fua := w.rng.IntN(6) == 0
	switch x := w.rng.IntN(100); {
	case x < 18:
		off, n := w.inBlock()
		return w.write("write", off, n, fua)
	case x < 26:
		off, n := w.wholeBlock()
		return w.write("write block", off, n, fua)
	case x < 30:
		off, _ := w.wholeBlock()
		return w.adopt(off, fua)
	case x < 38:
		off, n := w.across()
		return w.write("write across", off, n, fua)
	case x < 41:
		// A write of zeros over a whole block deletes its object.
		off, n := w.wholeBlock()
		if w.rng.IntN(2) == 0 {
			off, n = w.across()
		}
		return w.write("write zeros", off, n, fua)
	case x < 58:
		return w.read(w.across())
	case x < 62:
		// A sequential reader: read-ahead starts on its second read.
		g := w.r.cfg.Geometry
		blk := max(w.block()-w.rng.Int64N(3), 0)
		for k := 0; k < 3+w.rng.IntN(4) && blk < g.Blocks(); k, blk = k+1, blk+1 {
			if !w.read(blk*g.BlockSize, g.BlockSize) {
				return false
			}
		}
		return true
	case x < 72:
		return w.lend(w.across())
	case x < 80:
		off, n := w.across()
		if w.rng.IntN(2) == 0 {
			off, n = w.wholeBlock()
		}
		return w.discard("trim", off, n)
	case x < 84:
		off, n := w.across()
		return w.discard("zero", off, n)
	default:
		return w.sync()
	}
}

// lateWrite is a write racing Close; false once the device is closed or
// the test failed.
func (w *modelWorker) lateWrite() bool {
	off, n := w.inBlock()
	if w.rng.IntN(2) == 0 {
		off, n = w.wholeBlock()
	}
	o := &modelOp{worker: w.id, kind: "late write", off: off, n: n}
	w.r.m.begin(o, true)
	_, err := w.d.WriteAt(w.data(o), off)
	w.r.m.end(o, err)
	if errors.Is(err, ErrClosed) {
		return false
	}
	return w.errAllowed(o, false)
}

// data is the bytes write o writes.
func (w *modelWorker) data(o *modelOp) []byte {
	p := make([]byte, o.n)
	if !o.zero {
		for i := int64(0); i < o.n; i += SectorSize {
			fillSector(p[i:], o.seq, (o.off+i)/SectorSize)
		}
	}
	return p
}

func (w *modelWorker) write(kind string, off, n int64, fua bool) bool {
	o := &modelOp{worker: w.id, kind: kind, off: off, n: n, fua: fua, zero: kind == "write zeros"}
	w.r.m.begin(o, true)
	p := w.data(o)
	var err error
	if fua {
		_, err = w.d.WriteAtFUA(p, off)
	} else {
		_, err = w.d.WriteAt(p, off)
	}
	w.r.m.end(o, err)
	return w.errAllowed(o, fua)
}

// adopt writes a whole block through BlockBuffer and WriteBlockBuffer.
func (w *modelWorker) adopt(off int64, fua bool) bool {
	bs := w.r.cfg.Geometry.BlockSize
	o := &modelOp{worker: w.id, kind: "write buffer", off: off, n: bs, fua: fua}
	w.r.m.begin(o, true)
	err := ErrClosed
	if buf := w.d.BlockBuffer(); buf != nil {
		copy(buf, w.data(o))
		err = w.d.WriteBlockBuffer(buf, off, fua)
	}
	w.r.m.end(o, err)
	return w.errAllowed(o, fua)
}

func (w *modelWorker) discard(kind string, off, n int64) bool {
	o := &modelOp{worker: w.id, kind: kind, off: off, n: n, zero: true}
	w.r.m.begin(o, true)
	var err error
	if kind == "trim" {
		err = w.d.Trim(off, n)
	} else {
		err = w.d.ZeroAt(off, n, false)
	}
	w.r.m.end(o, err)
	return w.errAllowed(o, false)
}

func (w *modelWorker) read(off, n int64) bool {
	o := &modelOp{worker: w.id, kind: "read", off: off, n: n}
	w.r.m.begin(o, false)
	p := make([]byte, n)
	_, err := w.d.ReadAt(p, off)
	if cerr := w.r.m.endRead(o, p, err); cerr != nil {
		w.r.t.Errorf("%v: %v", w.r, cerr)
		return false
	}
	return w.errAllowed(o, true)
}

// lend borrows views of [off, off+n), checks them, holds them a moment
// while the others write, trim and upload, checks that they did not
// change, and releases them.
func (w *modelWorker) lend(off, n int64) bool {
	o := &modelOp{worker: w.id, kind: "lend", off: off, n: n}
	w.r.m.begin(o, false)
	views, release, err := w.d.LendAt(off, n, nil)
	var p []byte
	if err == nil {
		p = bytes.Join(views, nil)
	}
	if cerr := w.r.m.endRead(o, p, err); cerr != nil {
		w.r.t.Errorf("%v: %v", w.r, cerr)
		if err == nil {
			release()
		}
		return false
	}
	if err != nil {
		return w.errAllowed(o, true)
	}
	time.Sleep(time.Duration(w.rng.IntN(300)) * time.Microsecond)
	same := bytes.Equal(bytes.Join(views, nil), p)
	release()
	if !same {
		w.r.t.Errorf("%v: %v: the lent views changed before they were released", w.r, o)
		return false
	}
	return true
}

func (w *modelWorker) sync() bool {
	o := &modelOp{worker: w.id, kind: "sync"}
	w.r.m.begin(o, false)
	err := w.d.Sync()
	w.r.m.end(o, err)
	return w.errAllowed(o, true)
}

// errAllowed reports whether o's error, if any, is one the device may
// return: EIO from an operation that needs the store, in rounds that show
// the device every store failure, and after an Abort EIO, ErrAborted or ErrClosed from
// any operation.
func (w *modelWorker) errAllowed(o *modelOp, needsStore bool) bool {
	err := o.err
	switch {
	case err == nil:
		return true
	case w.aborted.Load() && (errors.Is(err, syscall.EIO) || errors.Is(err, ErrAborted) || errors.Is(err, ErrClosed)):
		return true
	case needsStore && !w.r.retrying && errors.Is(err, syscall.EIO):
		return true
	}
	w.r.t.Errorf("%v: %v: an error the device should not return here", w.r, o)
	return false
}

// bugReporter fails the test on a device log line that says it found a
// bug (an invariant broken; the device works around it and logs "BUG:").
type bugReporter struct{ t *testing.T }

func (h bugReporter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (h bugReporter) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "BUG") {
		h.t.Errorf("the device logged: %s", r.Message)
	}
	return nil
}
func (h bugReporter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h bugReporter) WithGroup(string) slog.Handler      { return h }
