package faults

import (
	"testing"
)

// The checker's own rules, on hand-made event logs: a checker that accepts
// everything would make the suite pass for nothing.

func TestUnitsNameTheirWrite(t *testing.T) {
	u := unitBytes(3*unitSize, 42)
	if g := decode(3*unitSize, u); g != 42 {
		t.Errorf("decode = %d, want 42", g)
	}
	if g := decode(4*unitSize, u); g != corrupt {
		t.Errorf("a unit read at the wrong offset decodes as %d, want corrupt", g)
	}
	u[unitSize-1] ^= 1
	if g := decode(3*unitSize, u); g != corrupt {
		t.Errorf("a unit with one bit flipped decodes as %d, want corrupt", g)
	}
	if g := decode(0, make([]byte, unitSize)); g != 0 {
		t.Errorf("zeros decode as %d, want 0", g)
	}
}

// replay builds a ledger of 4 units from events.
func replay(t *testing.T, events ...event) *ledger {
	t.Helper()
	l := newLedger(4, newFigures(), t.Logf)
	for _, e := range events {
		l.record(e)
	}
	return l
}

func TestLedgerDurability(t *testing.T) {
	for _, tc := range []struct {
		name      string
		events    []event
		observed  []int64
		lost, bad int
	}{{
		name:     "a write acknowledged before a FLUSH was sent must be there",
		events:   []event{{T: "w", ID: 1, N: 2}, {T: "ok", ID: 1}, {T: "f", ID: 2}, {T: "ok", ID: 2}},
		observed: []int64{0, 1, 0, 0},
		lost:     1,
	}, {
		name:     "and may be overwritten by a later write, acknowledged or not",
		events:   []event{{T: "w", ID: 1, N: 2}, {T: "ok", ID: 1}, {T: "f", ID: 2}, {T: "ok", ID: 2}, {T: "w", ID: 3, N: 1}},
		observed: []int64{3, 1, 0, 0},
	}, {
		name:     "a write acknowledged after the FLUSH was sent is not covered by it",
		events:   []event{{T: "w", ID: 1, N: 1}, {T: "f", ID: 2}, {T: "ok", ID: 1}, {T: "ok", ID: 2}},
		observed: []int64{0, 0, 0, 0},
	}, {
		name:     "a FLUSH that failed covers nothing",
		events:   []event{{T: "w", ID: 1, N: 1}, {T: "ok", ID: 1}, {T: "f", ID: 2}, {T: "err", ID: 2}},
		observed: []int64{0, 0, 0, 0},
	}, {
		name:     "a FUA write is durable when acknowledged",
		events:   []event{{T: "w", ID: 1, U: 2, N: 1, FUA: true}, {T: "ok", ID: 1}},
		observed: []int64{0, 0, 0, 0},
		lost:     1,
	}, {
		name:     "an older write is a loss too",
		events:   []event{{T: "w", ID: 1, N: 1}, {T: "ok", ID: 1}, {T: "w", ID: 2, N: 1, FUA: true}, {T: "ok", ID: 2}},
		observed: []int64{1, 0, 0, 0},
		lost:     1,
	}, {
		name:     "bytes no write wrote are corruption, durable or not",
		events:   nil,
		observed: []int64{0, corrupt, 0, 0},
		bad:      1,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			l := replay(t, tc.events...)
			lost, bad := l.check(tc.observed, "check")
			if lost != tc.lost || bad != tc.bad {
				t.Errorf("check found %d lost, %d corrupted; want %d, %d", lost, bad, tc.lost, tc.bad)
			}
		})
	}
}

func TestLedgerCleanStopMakesEveryAcknowledgedWriteDurable(t *testing.T) {
	l := replay(t, event{T: "w", ID: 1, N: 1}, event{T: "ok", ID: 1}, event{T: "w", ID: 2, U: 1, N: 1}, event{T: "err", ID: 2})
	l.stoppedCleanly()
	if lost, _ := l.check([]int64{0, 0, 0, 0}, "check"); lost != 1 {
		t.Errorf("lost = %d, want 1: the acknowledged write, not the failed one", lost)
	}
}

func TestLedgerLiveReads(t *testing.T) {
	l := replay(t,
		event{T: "w", ID: 1, N: 1}, event{T: "ok", ID: 1},
		event{T: "w", ID: 2, N: 1}, event{T: "err", ID: 2},
		event{T: "r", ID: 3, N: 1}, event{T: "ok", ID: 3, Gens: []int64{2}}, // the failed write may have landed
		event{T: "r", ID: 4, N: 1}, event{T: "ok", ID: 4, Gens: []int64{1}},
		event{T: "r", ID: 5, N: 1}, event{T: "ok", ID: 5, Gens: []int64{0}}, // the acknowledged write is gone
	)
	if n := l.fig.Get("bad reads"); n != 1 {
		t.Errorf("bad reads = %d, want 1", n)
	}
}

func TestLedgerStartsFromWhatTheLastCheckFound(t *testing.T) {
	l := replay(t, event{T: "w", ID: 1, N: 1, FUA: true}, event{T: "ok", ID: 1})
	l.check([]int64{1, 0, 0, 0}, "first")
	// Nothing written since: the unit must still hold write 1.
	if lost, _ := l.check([]int64{0, 0, 0, 0}, "second"); lost != 1 {
		t.Errorf("a unit that reverted to zeros after a check: lost = %d, want 1", lost)
	}
}
