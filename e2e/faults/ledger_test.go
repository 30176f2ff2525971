package faults

import (
	"fmt"
	"slices"
	"sync"
)

// request is one NBD request writer.py sent.
type request struct {
	id       int64
	kind     string // "w", "r" or "f"
	first, n int    // units
	fua      bool
	sent     int // ledger sequence number of the send
	endedAt  int // and of the answer
	ended    bool
	ok       bool
	durable  bool // a write that must survive: acknowledged with FUA, or before a FLUSH that succeeded
}

// ledger is what the device must hold, built from writer.py's events: per
// unit, the writes sent to it in order (the writer never has two requests
// on one unit in flight, so that is the order they took effect), which of
// them are durable, and the generation the last check found there.
type ledger struct {
	seq     int
	maxGen  int64
	reqs    map[int64]*request
	history [][]*request
	// base is, per unit, the generation the last check read back (0 for
	// zeros): what the store held when the history was last cleared.
	base []int64
	// acked are the writes acknowledged and not yet durable, oldest first.
	acked []*request
	fig   *figures
	// note reports the first few discrepancies in detail.
	note  func(format string, args ...any)
	notes int
}

func newLedger(units int, fig *figures, note func(string, ...any)) *ledger {
	return &ledger{reqs: map[int64]*request{}, history: make([][]*request, units), base: make([]int64, units), fig: fig, note: note}
}

func (l *ledger) units() int { return len(l.history) }

// nextGen is where a new writer's ids start: above every id so far, so
// that a generation names one write for the whole scenario.
func (l *ledger) nextGen() int64 { return l.maxGen + 1000 }

func (l *ledger) report(format string, args ...any) {
	if l.notes < 20 {
		l.note(format, args...)
	}
	l.notes++
}

// record applies one event.
func (l *ledger) record(e event) {
	l.seq++
	l.maxGen = max(l.maxGen, e.ID)
	switch e.T {
	case "w", "r", "f":
		r := &request{id: e.ID, kind: e.T, first: e.U, n: e.N, fua: e.FUA, sent: l.seq}
		l.reqs[e.ID] = r
		switch e.T {
		case "w":
			l.fig.Add("writes", 1)
			for u := r.first; u < r.first+r.n; u++ {
				l.history[u] = append(l.history[u], r)
			}
		case "r":
			l.fig.Add("reads", 1)
		}
		return
	}
	r := l.reqs[e.ID]
	if r == nil {
		l.report("event %+v for a request never sent", e)
		return
	}
	r.ended, r.ok, r.endedAt = true, e.T == "ok", l.seq
	switch {
	case r.kind == "w" && r.ok:
		l.fig.Add("acked", 1)
		if r.fua {
			l.fig.Add("fua acked", 1)
			l.makeDurable(r)
		} else {
			l.acked = append(l.acked, r)
		}
	case r.kind == "w":
		l.fig.Add("write EIO", 1)
	case r.kind == "f" && r.ok:
		l.fig.Add("flush ok", 1)
		// The FLUSH covers every write acknowledged before it was sent.
		l.acked = slices.DeleteFunc(l.acked, func(w *request) bool {
			if w.durable {
				return true
			}
			if l.endedBefore(w, r.sent) {
				l.makeDurable(w)
				return true
			}
			return false
		})
	case r.kind == "f":
		l.fig.Add("flush EIO", 1)
	case r.kind == "r" && r.ok:
		l.checkRead(r, e.Gens)
	case r.kind == "r":
		l.fig.Add("read EIO", 1)
	}
}

// endedBefore: w was acknowledged before the event numbered seq.
func (l *ledger) endedBefore(w *request, seq int) bool { return w.ended && w.ok && w.endedAt < seq }

func (l *ledger) makeDurable(w *request) {
	if !w.durable {
		w.durable = true
		l.fig.Add("flushed", 1)
	}
}

// stoppedCleanly: a daemon that exited 0 after SIGTERM has flushed every
// write it acknowledged.
func (l *ledger) stoppedCleanly() {
	for _, w := range l.acked {
		l.makeDurable(w)
	}
	l.acked = nil
}

// checkRead checks a live read: each unit must hold the last write
// acknowledged on it (or what the last check found, if none), or a later
// write that failed, which may or may not have landed.
func (l *ledger) checkRead(r *request, gens []int64) {
	bad := false
	for k, g := range gens {
		u := r.first + k
		h := l.history[u]
		last := lastIndex(h, func(w *request) bool { return w.ended && w.ok })
		ok := g != corrupt && acceptable(g, l.base[u], h, last)
		if !ok {
			bad = true
			l.report("read %d: unit %d holds generation %d; history %v, base %d", r.id, u, g, ids(h), l.base[u])
		}
	}
	if bad {
		l.fig.Add("bad reads", 1)
	}
}

// acceptable: g is the write at index from of h or any later one, or, with
// from < 0, the base or any write of h.
func acceptable(g, base int64, h []*request, from int) bool {
	if from < 0 && g == base {
		return true
	}
	for _, w := range h[max(from, 0):] {
		if w.id == g {
			return true
		}
	}
	return false
}

// check compares what a fresh daemon reads back, one generation per unit,
// with what must be there: the last durable write on each unit or a later
// one. It counts the durable writes lost (read back older, or as zeros)
// and the units that hold bytes no write wrote, then starts a new history
// from what it read.
func (l *ledger) check(observed []int64, what string) (lost, corrupted int) {
	lostWrites := map[int64]bool{}
	for u, g := range observed {
		h := l.history[u]
		from := lastIndex(h, func(w *request) bool { return w.durable })
		switch {
		case g == corrupt:
			corrupted++
			l.report("%s: unit %d holds bytes no write wrote; history %v, base %d", what, u, ids(h), l.base[u])
		case !acceptable(g, l.base[u], h, from):
			want := l.base[u]
			if from >= 0 {
				want = h[from].id
			}
			lostWrites[want] = true
			l.report("%s: unit %d holds generation %d, want %d or later; history %v, base %d", what, u, g, want, ids(h), l.base[u])
		}
		l.base[u] = g
		l.history[u] = nil
	}
	l.acked = nil
	l.fig.Add("lost", int64(len(lostWrites)))
	l.fig.Add("corrupted", int64(corrupted))
	return len(lostWrites), corrupted
}

func lastIndex(h []*request, match func(*request) bool) int {
	for i := len(h) - 1; i >= 0; i-- {
		if match(h[i]) {
			return i
		}
	}
	return -1
}

// ids shows a unit's history: generation, then ! durable, + acknowledged,
// x failed, ? no answer.
func ids(h []*request) []string {
	var out []string
	for _, w := range h {
		mark := "?"
		switch {
		case w.durable:
			mark = "!"
		case w.ended && w.ok:
			mark = "+"
		case w.ended:
			mark = "x"
		}
		out = append(out, fmt.Sprintf("%d%s", w.id, mark))
	}
	return out
}

// figures are one scenario's counters, in the order first added.
type figures struct {
	mu    sync.Mutex
	names []string
	vals  map[string]int64
}

func newFigures() *figures { return &figures{vals: map[string]int64{}} }

func (f *figures) Add(name string, n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.vals[name]; !ok {
		f.names = append(f.names, name)
	}
	f.vals[name] += n
}

func (f *figures) Get(name string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.vals[name]
}
