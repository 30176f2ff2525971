package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
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
