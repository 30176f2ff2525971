package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// The start-up section's targets (issue #16): the first byte within
// startupFirstByte of the start at every size, and the full listing
// startupRatioTarget times faster than one page after another from
// startupRatioFrom objects on.
const (
	startupFirstByte   = 1.0 // seconds
	startupRatioTarget = 8.0
	startupRatioFrom   = 1_000_000
)

// startupTable prints one row per bucket size: objbacker's first byte, its
// "serving" line, its full presence (since its start, and the listing's own
// time), the serial listing, and their ratio (serial over objbacker's
// listing, repeat by repeat). The first-byte target holds when the slowest
// repeat meets it; the ratio's, when the median does.
func startupTable(w io.Writer, spec sectionSpec, recs []record) {
	byObjects := map[int64][]record{}
	var sizes []int64
	for _, r := range recs {
		if _, ok := byObjects[r.Objects]; !ok {
			sizes = append(sizes, r.Objects)
		}
		byObjects[r.Objects] = append(byObjects[r.Objects], r)
	}
	slices.Sort(sizes)
	fmt.Fprintln(w, "| objects | first byte s | serving s | full presence s (since start) | objbacker listing s | listings (side by side) | serial LIST s | pages | ratio serial / objbacker | MinIO CPU s objbacker / serial | targets | |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, n := range sizes {
		var sub, peer []record
		for _, r := range byObjects[n] {
			switch r.Subject {
			case spec.subject:
				sub = append(sub, r)
			case spec.peer:
				peer = append(peer, r)
			}
		}
		field := func(rs []record, f func(record) float64) []float64 {
			var v []float64
			for _, r := range rs {
				v = append(v, f(r))
			}
			return v
		}
		cell := func(rs []record, format string, f func(record) float64) string {
			if len(rs) == 0 {
				return "–"
			}
			star := ""
			if slices.ContainsFunc(rs, func(r record) bool { return r.Stolen }) {
				star = "\\*"
			}
			return spread(field(rs, f), format) + star
		}
		var ratios []float64
		for _, s := range sub {
			for _, p := range peer {
				if p.Rep == s.Rep && s.Seconds > 0 {
					ratios = append(ratios, p.Seconds/s.Seconds)
				}
			}
		}
		ratio := "–"
		if len(ratios) > 0 {
			ratio = spread(ratios, "%.1f×")
		}
		var ranges, pages string
		if len(sub) > 0 {
			ranges = fmt.Sprintf("%d (%d)", sub[len(sub)-1].Listings, sub[len(sub)-1].ListsInFlight)
		}
		if len(peer) > 0 {
			pages = fmt.Sprint(peer[len(peer)-1].Pages)
		}
		minio := fmt.Sprintf("%s / %s", cell(sub, "%.1f", func(r record) float64 { return r.AlsoCPU }),
			cell(peer, "%.1f", func(r record) float64 { return r.AlsoCPU }))
		targets := fmt.Sprintf("first byte ≤ %g s", startupFirstByte)
		var missed []string
		switch {
		case len(sub) == 0:
			missed = append(missed, "no first byte")
		case slices.Max(field(sub, func(r record) float64 { return r.FirstByte })) > startupFirstByte:
			missed = append(missed, "first byte")
		}
		if n >= startupRatioFrom {
			targets += fmt.Sprintf("; ratio ≥ %g×", spec.target)
			switch {
			case len(ratios) == 0:
				missed = append(missed, "no ratio")
			case median(ratios) < spec.target:
				missed = append(missed, "ratio")
			}
		}
		verdict := "met"
		if len(missed) > 0 {
			verdict = "**missed**: " + strings.Join(missed, ", ")
		}
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", n,
			cell(sub, "%.2f", func(r record) float64 { return r.FirstByte }),
			cell(sub, "%.2f", func(r record) float64 { return r.Serving }),
			cell(sub, "%.2f", func(r record) float64 { return r.Listed }),
			cell(sub, "%.2f", func(r record) float64 { return r.Seconds }),
			ranges,
			cell(peer, "%.2f", func(r record) float64 { return r.Seconds }),
			pages, ratio, minio, targets, verdict)
	}
}
