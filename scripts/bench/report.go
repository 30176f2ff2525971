package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// sectionSpec says what a section compares. Each ratio is the subject's
// throughput over the peer's in the same repeat.
type sectionSpec struct {
	id, title     string
	subject, peer string
	target        float64 // least median ratio; 0: no target
	// optional: the table is printed only when the run measured the peer
	// (the baseline build of --baseline).
	optional bool
}

var sectionSpecs = []sectionSpec{
	{"nbd", "1. NBD layer: objbacker on mem:// vs nbdkit memory", "objbacker", "nbdkit", 1.0, false},
	{"nbd", "1b. NBD layer: objbacker vs the --baseline build, same rows", "objbacker", "baseline", 0.95, true},
	{"object", "2. Object path: objbacker on MinIO vs the bare SDK client", "objbacker", "bare SDK", 0.9, false},
	{"s3backer", "3. objbacker vs s3backer (FUSE), same MinIO, same fio job", "objbacker", "s3backer", 3.0, false},
	{"stripe", "4. Stripe: three exports on three buckets at once vs one export", "3 exports", "1 export", 0, false},
	{"rss", "5. Peak RSS of objbacker (VmHWM) against --cache-size", "objbacker", "", 0, false},
	{"latency", "6. Latency sweep: objbacker on mem:// behind a store latency, against its bound", "", "", 0, false},
	{"isolation", "6b. Isolation: a fast export's 1 MiB QD1 read beside an export whose store is stalled", "beside a stalled export", "alone", 0.9, false},
	{"depth", "6c. One NBD connection behind 50 ms: cold 1 MiB random reads at depth 16 vs depth 1", "QD16", "QD1", 12, false},
	{"startup", "7. Start-up: first byte served and full presence vs objects in the bucket, LIST +50 ms per page (MinIO)", "objbacker", "serial LIST", startupRatioTarget, false},
}

type noteFlags map[string][]string

func (n noteFlags) String() string { return fmt.Sprint(map[string][]string(n)) }
func (n noteFlags) Set(s string) error {
	id, text, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("want SECTION=TEXT, got %q", s)
	}
	n[id] = append(n[id], text)
	return nil
}

func reportMain(args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	notes := noteFlags{}
	fs.Var(notes, "note", "SECTION=TEXT printed under a section's title (repeatable)")
	maxOther := fs.Float64("max-other", 0.25, "the disturbance threshold the runs used, for the footnote")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		return usageErr("report [--note SECTION=TEXT]... RECORDS")
	}
	all, err := readRecords(fs.Arg(0))
	if err != nil {
		return err
	}
	w := bufio.NewWriter(os.Stdout)
	final := latestAttempts(all)
	for _, spec := range sectionSpecs {
		recs := inSection(final, spec.id)
		if spec.id == "rss" {
			recs = withLimit(final)
		}
		if len(recs) == 0 || spec.optional && !slices.ContainsFunc(recs, func(r record) bool { return r.Subject == spec.peer }) {
			continue
		}
		fmt.Fprintf(w, "\n### %s\n\n", spec.title)
		for _, n := range notes[spec.id] {
			fmt.Fprintf(w, "%s\n", n)
		}
		if len(notes[spec.id]) > 0 {
			fmt.Fprintln(w)
		}
		switch spec.id {
		case "rss":
			rssTable(w, recs)
		case "latency":
			sweepTables(w, recs)
		case "startup":
			startupTable(w, spec, recs)
		default:
			ratioTable(w, spec, recs)
		}
	}
	disturbance(w, all, final, *maxOther)
	return w.Flush()
}

func readRecords(path string) ([]record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var recs []record
	dec := json.NewDecoder(f)
	for {
		var r record
		if err := dec.Decode(&r); err == io.EOF {
			return recs, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		recs = append(recs, r)
	}
}

// latestAttempts keeps, for each phase, the last attempt: a disturbed phase
// was repeated, and only its repetition counts.
func latestAttempts(all []record) []record {
	type key struct {
		section, row, subject, latency string
		rep, parallel, exports         int
	}
	last := map[key]int{}
	var out []record
	for _, r := range all {
		k := key{r.Section, r.Row, r.Subject, r.Latency, r.Rep, r.Parallel, r.Exports}
		if i, ok := last[k]; ok {
			if r.Attempt >= out[i].Attempt {
				out[i] = r
			}
			continue
		}
		last[k] = len(out)
		out = append(out, r)
	}
	return out
}

func inSection(recs []record, id string) []record {
	var out []record
	for _, r := range recs {
		if r.Section == id {
			out = append(out, r)
		}
	}
	return out
}

// rows lists the section's row names in the order they were measured.
func rows(recs []record) []string {
	var out []string
	for _, r := range recs {
		if !slices.Contains(out, r.Row) {
			out = append(out, r.Row)
		}
	}
	return out
}

func pick(recs []record, row, subject string) []record {
	var out []record
	for _, r := range recs {
		if r.Row == row && r.Subject == subject {
			out = append(out, r)
		}
	}
	return out
}

func ratioTable(w io.Writer, spec sectionSpec, recs []record) {
	fmt.Fprintln(w, "| row | subject | MiB/s median [min–max] | IOPS | p99 ms | server CPU s/GiB | client CPU s/GiB | MinIO CPU s/GiB | ratio median [min–max] | target | |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	for _, row := range rows(recs) {
		sub, peer := pick(recs, row, spec.subject), pick(recs, row, spec.peer)
		var ratios []float64
		for _, s := range sub {
			for _, p := range peer {
				if p.Rep == s.Rep && p.MiBs > 0 {
					ratios = append(ratios, s.MiBs/p.MiBs)
				}
			}
		}
		ratio, target, verdict := "–", "–", ""
		if len(ratios) > 0 {
			ratio = spread(ratios, "%.2f×")
		}
		if spec.target > 0 {
			target = fmt.Sprintf("≥ %g×", spec.target)
			switch {
			case len(ratios) == 0:
				verdict = "no pair"
			case median(ratios) >= spec.target:
				verdict = "met"
			default:
				verdict = "**missed**"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", row, spec.subject, summary(sub), ratio, target, verdict)
		if len(peer) > 0 {
			fmt.Fprintf(w, "| | %s | %s | | | |\n", spec.peer, summary(peer))
		}
	}
}

// summary is the MiB/s, IOPS, p99, and CPU cells of one subject's repeats;
// a star marks figures that include a phase still disturbed after retries.
func summary(recs []record) string {
	if len(recs) == 0 {
		return "– | – | – | – | – | –"
	}
	var mibs, iops, p99, server, client, minio []float64
	star := ""
	for _, r := range recs {
		gib := float64(r.Bytes) / (1 << 30)
		mibs = append(mibs, r.MiBs)
		iops = append(iops, r.IOPS)
		p99 = append(p99, r.P99ms)
		server = append(server, r.ServerCPU/gib)
		client = append(client, r.ClientCPU/gib)
		minio = append(minio, r.AlsoCPU/gib)
		if r.Stolen {
			star = "\\*"
		}
	}
	cpu := func(v []float64) string {
		if median(v) == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f", median(v))
	}
	return fmt.Sprintf("%s%s | %s | %s | %s | %s | %s", spread(mibs, "%.0f"), star,
		si(median(iops)), fmt.Sprintf("%.1f", median(p99)), cpu(server), cpu(client), cpu(minio))
}

// withLimit is every objbacker phase that has an RSS target, section 5's
// first, then those of sections 2-4, which add their loads to it.
func withLimit(recs []record) []record {
	var own, others []record
	for _, r := range recs {
		switch {
		case r.Limit == 0:
		case r.Section == "rss":
			own = append(own, r)
		default:
			r.Row = fmt.Sprintf("%s, %s: %s", r.Section, r.Subject, r.Row)
			others = append(others, r)
		}
	}
	return append(own, others...)
}

func rssTable(w io.Writer, recs []record) {
	fmt.Fprintln(w, "| load | peak RSS MiB median [min–max] | target | |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, row := range rows(recs) {
		var peaks []float64
		var limit int64
		for _, r := range recs {
			if r.Row == row {
				peaks = append(peaks, float64(r.PeakRSS)/(1<<20))
				limit = max(limit, r.Limit)
			}
		}
		target, verdict := "–", ""
		if limit > 0 {
			target = fmt.Sprintf("≤ %d MiB", limit>>20)
			verdict = "met"
			if slices.Max(peaks) > float64(limit)/(1<<20) {
				verdict = "**missed**"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", row, spread(peaks, "%.1f"), target, verdict)
	}
}

// disturbance summarises the CPU other processes took during the phases.
func disturbance(w io.Writer, all, final []record, maxOther float64) {
	if len(all) == 0 {
		return
	}
	var other []float64
	repeated, still := 0, 0
	for _, r := range all {
		other = append(other, r.OtherCores)
		if r.Stolen {
			repeated++
		}
	}
	for _, r := range final {
		if r.Stolen {
			still++
		}
	}
	fmt.Fprintf(w, "\nOther processes' CPU during the %d measured phases: median %.2f, max %.2f cores. "+
		"%d phases exceeded %.2f cores (or steal did), repeated where the section repeats them; %d figures (\\*) include one.\n",
		len(all), median(other), slices.Max(other), repeated, maxOther, still)
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// spread is "median [min–max]", or the one value of a single repeat.
func spread(v []float64, format string) string {
	if len(v) == 1 {
		return fmt.Sprintf(format, v[0])
	}
	return fmt.Sprintf(format+" ["+format+"–"+format+"]", median(v), slices.Min(v), slices.Max(v))
}

// si shortens large counts: 35419 -> 35.4k.
func si(v float64) string {
	if v >= 10000 {
		return fmt.Sprintf("%.1fk", v/1000)
	}
	return fmt.Sprintf("%.0f", v)
}
