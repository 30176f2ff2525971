package main

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"time"
)

// The latency sweep of section 6: each figure against the bound that its
// store latency and requests in flight allow.

const (
	// sweepBlockMiB is the request and block size of every sweep row.
	sweepBlockMiB = 1.0
	// stripeTarget is the least aggregate of a stripe over one export's,
	// where the bounds allow it.
	stripeTarget = 5.0
)

type sweepKey struct {
	row               string
	parallel, exports int
	latency           time.Duration
}

// sweepCell is one (row, --parallel, exports, latency), over repeats.
type sweepCell struct {
	mibs     []float64
	inFlight int
	target   float64
	star     bool
}

type sweep struct {
	cells map[sweepKey]*sweepCell
	keys  []sweepKey // in the order measured
}

func newSweep(recs []record) *sweep {
	s := &sweep{cells: map[sweepKey]*sweepCell{}}
	for _, r := range recs {
		lat, err := time.ParseDuration(r.Latency)
		if err != nil || r.Parallel <= 0 || r.Exports <= 0 {
			continue
		}
		k := sweepKey{r.Row, r.Parallel, r.Exports, lat}
		c := s.cells[k]
		if c == nil {
			c = &sweepCell{}
			s.cells[k] = c
			s.keys = append(s.keys, k)
		}
		c.mibs = append(c.mibs, r.MiBs)
		c.inFlight = max(c.inFlight, r.InFlight)
		c.target = max(c.target, r.Target)
		c.star = c.star || r.Stolen
	}
	return s
}

// bound is what the row can reach at k's latency: with P blocks in flight
// (the cell's InFlight) and the service time s that the same row shows at
// 0 ms, where it runs at the NBD layer's ceiling C0 = P × block / s,
//
//	bound(L) = min(P × block / (L + s), C0) = 1 / (L / (P × block) + 1 / C0).
//
// A stripe of E exports is bounded by E times one export's bound, capped by
// the stripe's own figure at 0 ms. ok is false without the 0 ms rows.
func (s *sweep) bound(k sweepKey) (b float64, ok bool) {
	one := sweepKey{k.row, k.parallel, 1, 0}
	c0 := s.cells[one]
	if c0 == nil || c0.inFlight <= 0 || median(c0.mibs) <= 0 {
		return 0, false
	}
	b = 1 / (k.latency.Seconds()/(float64(c0.inFlight)*sweepBlockMiB) + 1/median(c0.mibs))
	if k.exports > 1 {
		own := s.cells[sweepKey{k.row, k.parallel, k.exports, 0}]
		if own == nil || median(own.mibs) <= 0 {
			return 0, false
		}
		b = min(float64(k.exports)*b, median(own.mibs))
	}
	return b, true
}

// limit is what the latency alone allows, without the service time:
// min(P × block / L, C0), for a stripe E times one export's, capped by its
// own C0. The bound is below it; a row that overlaps its CPU work with the
// waits reaches past the bound towards it.
func (s *sweep) limit(k sweepKey) (l float64, ok bool) {
	c0 := s.cells[sweepKey{k.row, k.parallel, 1, 0}]
	if c0 == nil || c0.inFlight <= 0 || median(c0.mibs) <= 0 {
		return 0, false
	}
	l = median(c0.mibs)
	if k.latency > 0 {
		l = min(l, float64(c0.inFlight)*sweepBlockMiB/k.latency.Seconds())
	}
	if k.exports > 1 {
		own := s.cells[sweepKey{k.row, k.parallel, k.exports, 0}]
		if own == nil || median(own.mibs) <= 0 {
			return 0, false
		}
		l = min(float64(k.exports)*l, median(own.mibs))
	}
	return l, true
}

// rowKeys are a row's cells: one export before the stripe, then by
// --parallel and latency.
func (s *sweep) rowKeys(row string) []sweepKey {
	var out []sweepKey
	for _, k := range s.keys {
		if k.row == row {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, func(a, b sweepKey) int {
		return cmp.Or(cmp.Compare(a.exports, b.exports), cmp.Compare(a.parallel, b.parallel),
			cmp.Compare(a.latency, b.latency))
	})
	return out
}

func sweepTables(w io.Writer, recs []record) {
	s := newSweep(recs)
	var names []string
	for _, k := range s.keys {
		if !slices.Contains(names, k.row) {
			names = append(names, k.row)
		}
	}
	for _, row := range names {
		fmt.Fprintf(w, "**%s**\n\n", row)
		fmt.Fprintln(w, "| latency | --parallel | exports | in flight | MiB/s median [min–max] | bound MiB/s | of bound | target | | latency limit MiB/s | of limit | × one export | target | |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
		for _, k := range s.rowKeys(row) {
			c := s.cells[k]
			star := ""
			if c.star {
				star = "\\*"
			}
			boundCell, frac, target, verdict := "–", "–", "–", ""
			b, ok := s.bound(k)
			if ok {
				boundCell = fmt.Sprintf("%.0f", b)
				frac = fmt.Sprintf("%.0f %%", 100*median(c.mibs)/b)
			}
			if c.target > 0 {
				target = fmt.Sprintf("≥ %.0f %%", 100*c.target)
				verdict = verdictOf(ok, median(c.mibs)/b >= c.target)
			}
			limitCell, limitFrac := "–", "–"
			if l, ok := s.limit(k); ok {
				limitCell = fmt.Sprintf("%.0f", l)
				limitFrac = fmt.Sprintf("%.0f %%", 100*median(c.mibs)/l)
			}
			ratio, rtarget, rverdict := s.stripeCells(k)
			fmt.Fprintf(w, "| %s | %d | %d | %d | %s%s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				fmtLatency(k.latency), k.parallel, k.exports, c.inFlight, spread(c.mibs, "%.0f"), star,
				boundCell, frac, target, verdict, limitCell, limitFrac, ratio, rtarget, rverdict)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "Bound = min(P × %g MiB / (latency + s), C0) = 1 / (latency / (P × %g MiB) + 1 / C0), "+
		"where P is the column \"in flight\" (--parallel, or a QD1 reader's read-ahead window), C0 the same row's "+
		"median MiB/s at 0 ms with one export (the NBD layer's ceiling on this machine for that load) and "+
		"s = P × %g MiB / C0 its service time; at 0 ms the fraction is 100 %% by construction. "+
		"That s is the time of P requests queued at 0 ms; behind a latency, the CPU work of some requests overlaps the "+
		"waits of others, so a row can exceed the bound, up to the latency limit min(P × %g MiB / latency, C0) "+
		"(a stripe's: its exports times one export's, capped likewise). A 0 ms figure measured low (they are CPU-bound, "+
		"and a busy machine lowers them) also lifts a fraction. "+
		"A stripe's bound is its number of exports times one export's, capped by the stripe's own 0 ms figure; "+
		"its target is ≥ %.0f× one export wherever that bound allows it.\n",
		sweepBlockMiB, sweepBlockMiB, sweepBlockMiB, sweepBlockMiB, stripeTarget)
}

// stripeCells are a stripe's aggregate over one export's in the same
// (row, --parallel, latency), and the stripe target where the bounds allow
// it; empty for one export.
func (s *sweep) stripeCells(k sweepKey) (ratio, target, verdict string) {
	if k.exports <= 1 {
		return "", "", ""
	}
	oneKey := k
	oneKey.exports = 1
	one := s.cells[oneKey]
	if one == nil || median(one.mibs) <= 0 {
		return "–", "–", ""
	}
	r := median(s.cells[k].mibs) / median(one.mibs)
	ratio = fmt.Sprintf("%.2f×", r)
	bk, ok1 := s.bound(k)
	b1, ok2 := s.bound(oneKey)
	if !ok1 || !ok2 || b1 <= 0 {
		return ratio, "–", ""
	}
	if allows := bk / b1; allows < stripeTarget {
		return ratio, fmt.Sprintf("– (bound allows %.1f×)", allows), ""
	}
	return ratio, fmt.Sprintf("≥ %.0f×", stripeTarget), verdictOf(true, r >= stripeTarget)
}

func verdictOf(known, met bool) string {
	switch {
	case !known:
		return "no bound"
	case met:
		return "met"
	default:
		return "**missed**"
	}
}

// fmtLatency writes 0s as "0 ms" and the rest as Go does, with a space.
func fmtLatency(d time.Duration) string {
	if d%time.Millisecond == 0 {
		return fmt.Sprintf("%d ms", d/time.Millisecond)
	}
	return d.String()
}
