package main

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/objbacker/objbacker/kernel"
	"github.com/objbacker/objbacker/nbd"
	"github.com/objbacker/objbacker/objstore"
)

// scrape reads the server's /metrics page.
func (s *server) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	return scrape(t, s.metrics)
}

// scrape reads the /metrics page served on addr.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q; want Prometheus text", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return families
}

// series finds the metrics of family name whose labels include labels.
func series(families map[string]*dto.MetricFamily, name string, labels map[string]string) []*dto.Metric {
	f := families[name]
	if f == nil {
		return nil
	}
	var out []*dto.Metric
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		out = append(out, m)
	}
	return out
}

// TestMetrics scrapes a running serve after NBD requests of every command:
// the names the hand-written format served, with their export label; the
// latency histograms of NBD requests and of store requests; the payload
// bytes in flight; the Go and process collectors.
func TestMetrics(t *testing.T) {
	s := startServe(t, "--export", "disk0="+fileURL(t, "d0"), "--export", "disk1="+fileURL(t, "d1"),
		"--size", "64M", "--block-size", "1M")
	const script = `
import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
M = 1 << 20
h.pwrite(b"\x5a" * (2 * M), 0)
h.flush()
h.trim(M, 0)
h.zero(M, M)
h.flush()
assert h.pread(2 * M, 0) == bytes(2 * M), "read after trim and zero"
h.shutdown()
print("ok")
`
	if out := python(t, script, s.uri("disk1")); !strings.Contains(out, "ok") {
		t.Fatalf("script output: %s", out)
	}
	runOK(t, "nbdinfo", s.uri("disk0"))
	m := s.scrape(t)

	for _, em := range exportMetrics {
		for _, export := range []string{"disk0", "disk1"} {
			got := series(m, em.name, map[string]string{"export": export})
			if len(got) != 1 || len(got[0].GetLabel()) != 1 {
				t.Errorf("%s{export=%q}: %d series, want 1 with only the export label", em.name, export, len(got))
			}
		}
		if f := m[em.name]; f != nil {
			want := dto.MetricType_COUNTER
			if em.kind == gauge {
				want = dto.MetricType_GAUGE
			}
			if f.GetType() != want {
				t.Errorf("%s is a %v; want %v", em.name, f.GetType(), want)
			}
		}
	}
	value := func(name, export string) float64 {
		got := series(m, name, map[string]string{"export": export})
		if len(got) != 1 {
			return -1
		}
		if c := got[0].GetCounter(); c != nil {
			return c.GetValue()
		}
		return got[0].GetGauge().GetValue()
	}
	if v := value("objbacker_written_bytes_total", "disk1"); v != 2<<20 {
		t.Errorf("objbacker_written_bytes_total{export=disk1} = %v; want %d", v, 2<<20)
	}
	if v := value("objbacker_store_puts_total", "disk1"); v < 1 {
		t.Errorf("objbacker_store_puts_total{export=disk1} = %v; want the block written", v)
	}

	count := func(name string, labels map[string]string) uint64 {
		t.Helper()
		got := series(m, name, labels)
		if len(got) != 1 || got[0].GetHistogram() == nil {
			t.Errorf("%s%v: %d histograms, want 1", name, labels, len(got))
			return 0
		}
		h := got[0].GetHistogram()
		if len(h.GetBucket()) != len(latencyBuckets)+1 { // and +Inf
			t.Errorf("%s%v: %d buckets, want %d", name, labels, len(h.GetBucket()), len(latencyBuckets)+1)
		}
		return h.GetSampleCount()
	}
	for cmd, want := range map[string]uint64{"write": 1, "flush": 2, "trim": 1, "write_zeroes": 1, "read": 1} {
		labels := map[string]string{"export": "disk1", "command": cmd, "outcome": "ok"}
		if got := count("objbacker_nbd_request_duration_seconds", labels); got != want {
			t.Errorf("objbacker_nbd_request_duration_seconds%v: %d requests, want %d", labels, got, want)
		}
	}
	// Every command's histogram is there from the start, if empty.
	count("objbacker_nbd_request_duration_seconds", map[string]string{"export": "disk0", "command": "trim", "outcome": "ok"})
	// The store's: the device's opening reads and the flushes' uploads.
	for _, op := range []string{"get", "put"} {
		labels := map[string]string{"export": "disk1", "operation": op, "outcome": "ok"}
		if got := count("objbacker_store_request_duration_seconds", labels); got < 1 {
			t.Errorf("objbacker_store_request_duration_seconds%v: %d requests, want some", labels, got)
		}
	}
	puts := count("objbacker_store_request_duration_seconds", map[string]string{"export": "disk1", "operation": "put", "outcome": "ok"})
	if v := value("objbacker_store_puts_total", "disk1"); float64(puts) != v {
		t.Errorf("%d PUTs timed, %v counted", puts, v)
	}
	for _, op := range []string{"delete", "stat", "list"} {
		count("objbacker_store_request_duration_seconds", map[string]string{"export": "disk0", "operation": op, "outcome": "ok"})
	}

	for _, export := range []string{"disk0", "disk1"} {
		if v := value("objbacker_nbd_inflight_bytes", export); v != 0 {
			t.Errorf("objbacker_nbd_inflight_bytes{export=%q} = %v with no request in flight", export, v)
		}
		if v := value("objbacker_nbd_inflight_limit_bytes", export); v <= 0 {
			t.Errorf("objbacker_nbd_inflight_limit_bytes{export=%q} = %v", export, v)
		}
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "go_gc_duration_seconds",
		"process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"} {
		if m[name] == nil {
			t.Errorf("%s missing: the Go and process collectors should serve it", name)
		}
	}
}

// TestVdevMetrics: vdev serves the exports' metrics too, with the store's
// histograms and the Go and process collectors; the NBD server's are
// serve's alone.
func TestVdevMetrics(t *testing.T) {
	addr := freeAddr(t)
	v := startVdev(t, "--size", "64M", "--block-size", "256K", "--metrics", addr, "--export", "a="+fileURL(t, "a"))
	a, _ := v.k.Export("a")
	data := bytes.Repeat([]byte{0x5a}, 256<<10)
	v.do(t, kernel.Header{Op: kernel.OpWrite, Export: a.ID, Offset: 0, Length: uint32(len(data))}, data)
	v.do(t, kernel.Header{Op: kernel.OpFlush, Export: a.ID}, nil)
	m := scrape(t, addr)
	for _, em := range exportMetrics {
		if got := series(m, em.name, map[string]string{"export": "a"}); len(got) != 1 {
			t.Errorf("%s{export=a}: %d series, want 1", em.name, len(got))
		}
	}
	if got := series(m, "objbacker_written_bytes_total", map[string]string{"export": "a"}); len(got) == 1 && got[0].GetCounter().GetValue() != 256<<10 {
		t.Errorf("objbacker_written_bytes_total = %v; want %d", got[0].GetCounter().GetValue(), 256<<10)
	}
	if got := series(m, "objbacker_store_request_duration_seconds", map[string]string{"export": "a", "operation": "put", "outcome": "ok"}); len(got) != 1 || got[0].GetHistogram().GetSampleCount() < 1 {
		t.Errorf("store PUT histogram: %v", got)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if m[name] == nil {
			t.Errorf("%s missing", name)
		}
	}
	for _, name := range []string{"objbacker_nbd_request_duration_seconds", "objbacker_nbd_inflight_bytes"} {
		if m[name] != nil {
			t.Errorf("vdev serves %s, which is serve's", name)
		}
	}
}

// The observers count failures apart, a missing object as a success, and
// a success costs no allocation.
func TestMetricsObservers(t *testing.T) {
	srv := &nbd.Server{Exports: []*nbd.Export{{Name: "disk0"}}}
	nm := newNBDMetrics(srv)
	nm.observe("disk0", "write", 4096, time.Millisecond, nil)
	nm.observe("disk0", "flush", 0, time.Millisecond, errors.New("EIO"))
	if n := testing.AllocsPerRun(100, func() { nm.observe("disk0", "read", 4096, time.Millisecond, nil) }); n != 0 {
		t.Errorf("a successful NBD request's observation allocates %v times", n)
	}
	sl := newStoreLatency("disk0")
	sl.observe(objstore.OpGet, time.Millisecond, objstore.ErrNotFound)
	sl.observe(objstore.OpPut, time.Millisecond, errors.New("503"))
	if n := testing.AllocsPerRun(100, func() { sl.observe(objstore.OpStat, time.Millisecond, nil) }); n != 0 {
		t.Errorf("a successful store request's observation allocates %v times", n)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(nm, sl.vec)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]*dto.MetricFamily{}
	for _, f := range families {
		m[f.GetName()] = f
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   uint64
	}{
		{"objbacker_nbd_request_duration_seconds", map[string]string{"command": "write", "outcome": "ok"}, 1},
		{"objbacker_nbd_request_duration_seconds", map[string]string{"command": "flush", "outcome": "ok"}, 0},
		{"objbacker_nbd_request_duration_seconds", map[string]string{"command": "flush", "outcome": "error"}, 1},
		{"objbacker_nbd_request_duration_seconds", map[string]string{"command": "read", "outcome": "ok"}, 101},
		{"objbacker_store_request_duration_seconds", map[string]string{"operation": "get", "outcome": "ok"}, 1},
		{"objbacker_store_request_duration_seconds", map[string]string{"operation": "put", "outcome": "error"}, 1},
		{"objbacker_store_request_duration_seconds", map[string]string{"operation": "stat", "outcome": "ok"}, 101},
	} {
		c.labels["export"] = "disk0"
		got := series(m, c.name, c.labels)
		if len(got) != 1 || got[0].GetHistogram().GetSampleCount() != c.want {
			t.Errorf("%s%v: %v; want one histogram of %d", c.name, c.labels, got, c.want)
		}
	}
	if got := series(m, "objbacker_nbd_inflight_limit_bytes", map[string]string{"export": "disk0"}); len(got) != 1 || got[0].GetGauge().GetValue() != nbd.DefaultMaxBuffered {
		t.Errorf("objbacker_nbd_inflight_limit_bytes before any connection: %v; want %d", got, nbd.DefaultMaxBuffered)
	}
}
