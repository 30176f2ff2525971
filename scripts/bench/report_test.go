package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestReadResultFio(t *testing.T) {
	// A trimmed fio 3.33 result with a note before the JSON, as fio
	// sometimes writes; two job entries, as without group_reporting.
	const out = `note: both iodepth >= 1 and synchronous I/O engine are selected
{"fio version":"fio-3.33","jobs":[
 {"read":{"io_bytes":1048576,"total_ios":1,"runtime":500,"iops":2.0,"clat_ns":{"percentile":{"99.000000":3000000}}},
  "write":{"io_bytes":0,"total_ios":0,"runtime":0,"iops":0}},
 {"read":{"io_bytes":3145728,"total_ios":3,"runtime":1000,"iops":3.0,"clat_ns":{"percentile":{"99.000000":5000000}}},
  "write":{"io_bytes":0,"total_ios":0,"runtime":0,"iops":0}}]}`
	path := filepath.Join(t.TempDir(), "fio.json")
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := readResult(path)
	if err != nil {
		t.Fatal(err)
	}
	want := measured{bytes: 4 << 20, ops: 4, seconds: 1, iops: 5, p99ms: 5}
	if m != want {
		t.Errorf("got %+v, want %+v", m, want)
	}
}

func TestReadResultS3(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s3.json")
	if err := writeJSON(path, s3Result{Kind: "s3", Op: "get", Ops: 8, Bytes: 8 << 20, Seconds: 2, P99ms: 7}); err != nil {
		t.Fatal(err)
	}
	m, err := readResult(path)
	if err != nil {
		t.Fatal(err)
	}
	if m.bytes != 8<<20 || m.iops != 4 || m.p99ms != 7 {
		t.Errorf("got %+v", m)
	}
}

func TestLatestAttempts(t *testing.T) {
	var recs []record
	for _, line := range []string{
		`{"section":"nbd","row":"r","subject":"a","rep":1,"attempt":1,"mib_s":1}`,
		`{"section":"nbd","row":"r","subject":"b","rep":1,"attempt":1,"mib_s":5}`,
		`{"section":"nbd","row":"r","subject":"a","rep":1,"attempt":2,"mib_s":2}`,
	} {
		var r record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	got := latestAttempts(recs)
	if len(got) != 2 || got[0].MiBs != 2 || got[1].MiBs != 5 {
		t.Errorf("got %+v", got)
	}
}

func TestSpread(t *testing.T) {
	if got := spread([]float64{3, 1, 2, 10}, "%.1f"); got != "2.5 [1.0–10.0]" {
		t.Errorf("spread = %q", got)
	}
	if got := spread([]float64{4}, "%.0f"); got != "4" {
		t.Errorf("spread of one = %q", got)
	}
}

func TestSweepBound(t *testing.T) {
	rec := func(row, lat string, p, e, inFlight int, mibs float64) record {
		return record{Section: "latency", Row: row, Latency: lat, Parallel: p, Exports: e, InFlight: inFlight, MiBs: mibs}
	}
	s := newSweep([]record{
		rec("w", "0s", 16, 1, 16, 1600), // s = 16 MiB / 1600 MiB/s = 10 ms
		rec("w", "30ms", 16, 1, 16, 380),
		rec("w", "0s", 16, 6, 16, 2000),
		rec("w", "30ms", 16, 6, 16, 1900),
		rec("w", "90ms", 16, 6, 16, 900),
		rec("q", "0s", 16, 1, 4, 400), // s = 4 MiB / 400 MiB/s = 10 ms
		rec("q", "30ms", 16, 1, 4, 90),
	})
	for _, c := range []struct {
		k    sweepKey
		want float64
	}{
		{sweepKey{"w", 16, 1, 0}, 1600},
		{sweepKey{"w", 16, 1, 30 * time.Millisecond}, 400},  // 16 MiB / 40 ms
		{sweepKey{"w", 16, 6, 30 * time.Millisecond}, 2000}, // 6 × 400, capped by the stripe's 0 ms
		{sweepKey{"w", 16, 6, 90 * time.Millisecond}, 960},  // 6 × 16 MiB / 100 ms
		{sweepKey{"q", 16, 1, 30 * time.Millisecond}, 100},  // 4 MiB / 40 ms
	} {
		got, ok := s.bound(c.k)
		if !ok || math.Abs(got-c.want) > 1e-9*c.want {
			t.Errorf("bound(%+v) = %v, %v; want %v", c.k, got, ok, c.want)
		}
	}
	for _, c := range []struct {
		k    sweepKey
		want float64
	}{
		{sweepKey{"w", 16, 1, 0}, 1600},
		{sweepKey{"w", 16, 1, 30 * time.Millisecond}, 16 / 0.03},
		{sweepKey{"w", 16, 6, 90 * time.Millisecond}, 6 * 16 / 0.09},
		{sweepKey{"q", 16, 1, 30 * time.Millisecond}, 4 / 0.03},
	} {
		got, ok := s.limit(c.k)
		if !ok || math.Abs(got-c.want) > 1e-9*c.want {
			t.Errorf("limit(%+v) = %v, %v; want %v", c.k, got, ok, c.want)
		}
	}
	if _, ok := s.bound(sweepKey{"x", 16, 1, 0}); ok {
		t.Error("a row without its 0 ms figure has a bound")
	}
	ratio, target, verdict := s.stripeCells(sweepKey{"w", 16, 6, 90 * time.Millisecond})
	if ratio != "–" || target != "–" || verdict != "" {
		t.Errorf("stripe cells without one export's figure: %q %q %q", ratio, target, verdict)
	}
	// 1900 / 380 = 5×, and the bounds allow 2000 / 400 = 5×: met.
	ratio, target, verdict = s.stripeCells(sweepKey{"w", 16, 6, 30 * time.Millisecond})
	if ratio != "5.00×" || target != "≥ 5×" || verdict != "met" {
		t.Errorf("stripe cells at 30 ms: %q %q %q", ratio, target, verdict)
	}
	// At 0 ms the stripe's bound is its own figure, 1.25× one export's.
	_, target, verdict = s.stripeCells(sweepKey{"w", 16, 6, 0})
	if target != "– (bound allows 1.2×)" || verdict != "" {
		t.Errorf("stripe cells at 0 ms: %q %q", target, verdict)
	}
}

func TestStartupTable(t *testing.T) {
	ob := func(n int64, rep int, first, listed float64) record {
		return record{Section: "startup", Row: startupRow(n), Subject: "objbacker", Rep: rep, Objects: n,
			FirstByte: first, Serving: first / 2, Listed: listed + 0.3, Seconds: listed, Listings: 9, ListsInFlight: 4}
	}
	serial := func(n int64, rep int, s float64) record {
		return record{Section: "startup", Row: startupRow(n), Subject: "serial LIST", Rep: rep, Objects: n,
			Seconds: s, Listed: s, Pages: int(n / 1000)}
	}
	spec := sectionSpecs[slices.IndexFunc(sectionSpecs, func(s sectionSpec) bool { return s.id == "startup" })]
	var b strings.Builder
	startupTable(&b, spec, []record{
		ob(1000000, 1, 0.4, 10), serial(1000000, 1, 100), // 10×
		ob(1000000, 2, 1.2, 20), serial(1000000, 2, 120), // 6×; first byte over 1 s
		ob(1000, 1, 0.3, 0.5), serial(1000, 1, 0.1),
	})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("want a header, a rule and 2 rows:\n%s", b.String())
	}
	// Sizes ascend whatever the order measured.
	if !strings.HasPrefix(lines[2], "| 1000 | 0.30 |") || !strings.HasSuffix(lines[2], "| 0.2× | 0.0 / 0.0 | first byte ≤ 1 s | met |") {
		t.Errorf("10^3 row: %s", lines[2])
	}
	// The ratio's median is 8× (met); the slowest first byte misses.
	for _, want := range []string{"| 1000000 | 0.80 [0.40–1.20] |", "| 8.0× [6.0×–10.0×] |", "ratio ≥ 8× | **missed**: first byte |"} {
		if !strings.Contains(lines[3], want) {
			t.Errorf("10^6 row lacks %q: %s", want, lines[3])
		}
	}
}
