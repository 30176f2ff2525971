package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/urfave/cli/v2"

	"github.com/objbacker/objbacker/blockmap"
	"github.com/objbacker/objbacker/nbd"
	"github.com/objbacker/objbacker/objstore"
)

// listenMetrics binds --metrics, if set, before any bucket is opened: a
// mistyped or taken address must not cost a bucket its first claim.
func listenMetrics(c *cli.Context) (net.Listener, error) {
	addr := c.String("metrics")
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, usageError{fmt.Errorf("--metrics %s: %w", addr, err)}
	}
	return ln, nil
}

// serveMetrics serves the exports' metrics, the collectors in more, and
// the Go runtime's and the process's, in Prometheus format on ln at
// /metrics, and Go's profiles at /debug/pprof/. ln nil: nothing to serve.
// The returned function stops the server.
func serveMetrics(ln net.Listener, exports []*openedExport, log *slog.Logger, more ...prometheus.Collector) func() {
	if ln == nil {
		return func() {}
	}
	mux := http.NewServeMux()
	// Profiles are what a slow export needs looked at; they cost nothing
	// until fetched.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/metrics", promhttp.HandlerFor(metricsRegistry(exports, more...), promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError),
	}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	log.Info("metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}
}

// metricsRegistry is a registry of the process's own, not the library's
// global one: what it serves is what was put in it here.
func metricsRegistry(exports []*openedExport, more ...prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		exportCollector(exports),
	)
	for _, e := range exports {
		reg.MustRegister(e.storeLatency.vec)
	}
	reg.MustRegister(more...)
	return reg
}

// latencyBuckets are the bounds of the latency histograms, in seconds:
// from a request served from memory or a local disk to one a store
// retried for a minute.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// storeLatency is one export's histograms of store request durations, by
// operation and outcome, fed by the store's objstore.Observer.
type storeLatency struct {
	vec *prometheus.HistogramVec
	ok  [objstore.NumOps]prometheus.Observer
}

func newStoreLatency(export string) *storeLatency {
	l := &storeLatency{vec: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:        "objbacker_store_request_duration_seconds",
		Help:        "Duration of the requests sent to the store, retries each counted (a GET until its body is closed), by operation and outcome (a missing object is ok).",
		ConstLabels: prometheus.Labels{"export": export},
		Buckets:     latencyBuckets,
	}, []string{"operation", "outcome"})}
	// The successes are made now, so that they are served from the start;
	// failures appear with the first.
	for op := range objstore.Op(objstore.NumOps) {
		l.ok[op] = l.vec.WithLabelValues(op.String(), "ok")
	}
	return l
}

func (l *storeLatency) observe(op objstore.Op, d time.Duration, err error) {
	if objstore.Failed(err) {
		l.vec.WithLabelValues(op.String(), "error").Observe(d.Seconds())
		return
	}
	l.ok[op].Observe(d.Seconds())
}

// nbdCommands are the commands nbd.Server.Observe names.
var nbdCommands = [...]string{"read", "write", "flush", "trim", "write_zeroes"}

// nbdMetrics are the NBD server's: request durations by export, command
// and outcome, fed by nbd.Server.Observe, and the payload bytes in flight.
type nbdMetrics struct {
	srv     *nbd.Server
	latency *prometheus.HistogramVec
	// ok holds the successes' histograms by export, by command as in
	// nbdCommands. Made before serving and only read after.
	ok             map[string]*[len(nbdCommands)]prometheus.Observer
	inflight, size *prometheus.Desc
}

func newNBDMetrics(srv *nbd.Server) *nbdMetrics {
	m := &nbdMetrics{
		srv: srv,
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "objbacker_nbd_request_duration_seconds",
			Help:    "Duration of the NBD requests passed to an export, from admission (a WRITE's payload received) to the reply (a READ's sent), by command and outcome.",
			Buckets: latencyBuckets,
		}, []string{"export", "command", "outcome"}),
		ok: make(map[string]*[len(nbdCommands)]prometheus.Observer),
		inflight: prometheus.NewDesc("objbacker_nbd_inflight_bytes",
			"Payload bytes of the NBD requests in flight, held against the export's budget.", []string{"export"}, nil),
		size: prometheus.NewDesc("objbacker_nbd_inflight_limit_bytes",
			"The export's budget of payload bytes in flight.", []string{"export"}, nil),
	}
	for _, e := range srv.Exports {
		var ok [len(nbdCommands)]prometheus.Observer
		for i, cmd := range nbdCommands {
			ok[i] = m.latency.WithLabelValues(e.Name, cmd, "ok")
		}
		m.ok[e.Name] = &ok
	}
	return m
}

// observe is the server's nbd.Server.Observe: a map lookup and a
// histogram update, without allocating, for a success.
func (m *nbdMetrics) observe(export, cmd string, _ uint32, d time.Duration, err error) {
	ok := m.ok[export]
	if err != nil || ok == nil {
		m.latency.WithLabelValues(export, cmd, outcome(err)).Observe(d.Seconds())
		return
	}
	for i, c := range nbdCommands {
		if c == cmd {
			ok[i].Observe(d.Seconds())
			return
		}
	}
	m.latency.WithLabelValues(export, cmd, "ok").Observe(d.Seconds())
}

func outcome(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

func (m *nbdMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.latency.Describe(ch)
	ch <- m.inflight
	ch <- m.size
}

func (m *nbdMetrics) Collect(ch chan<- prometheus.Metric) {
	m.latency.Collect(ch)
	for _, e := range m.srv.Exports {
		inUse, size, _ := m.srv.Buffered(e.Name)
		ch <- prometheus.MustNewConstMetric(m.inflight, prometheus.GaugeValue, float64(inUse), e.Name)
		ch <- prometheus.MustNewConstMetric(m.size, prometheus.GaugeValue, float64(size), e.Name)
	}
}

// exportMetric is one of the counters and gauges every export has, read
// from its device's and its store's counts at each scrape.
type exportMetric struct {
	name string
	kind prometheus.ValueType
	help string
	// value reads it from the device's stats and the store's counts.
	value func(s *blockmap.Stats, c *objstore.Counts) int64
}

const (
	counter = prometheus.CounterValue
	gauge   = prometheus.GaugeValue
)

// exportMetrics are the names dashboards know since the text format was
// written by hand; keep them.
var exportMetrics = []exportMetric{
	{"objbacker_read_requests_total", counter, "Read requests served.", func(s *blockmap.Stats, _ *objstore.Counts) int64 { return s.ReadOps }},
	{"objbacker_write_requests_total", counter, "Write requests served.", func(s *blockmap.Stats, _ *objstore.Counts) int64 { return s.WriteOps }},
	{"objbacker_trim_requests_total", counter, "Trim and zero requests served.", func(s *blockmap.Stats, _ *objstore.Counts) int64 { return s.TrimOps }},
	{"objbacker_flush_requests_total", counter, "Flushes served.", func(s *blockmap.Stats, _ *objstore.Counts) int64 { return s.FlushOps }},
	{"objbacker_read_bytes_total", counter, "Bytes read by clients.", func(s *blockmap.Stats, _ *objstore.Counts) int64 { return s.BytesRead }},
	{"objbacker_written_bytes_total", counter, "Bytes written by clients.", func(s *blockmap.Stats, _ *objstore.Counts) int64 { return s.BytesWritten }},
	{"objbacker_cache_hits_total", counter, "Block reads served from the cache.", func(s *blockmap.Stats, _ *objstore.Counts) int64 { return s.CacheHits }},
	{"objbacker_cache_misses_total", counter, "Block reads that waited for the store.", func(s *blockmap.Stats, _ *objstore.Counts) int64 { return s.CacheMisses }},
	{"objbacker_read_ahead_total", counter, "Blocks fetched ahead of sequential readers.", func(s *blockmap.Stats, _ *objstore.Counts) int64 { return s.ReadAheads }},
	{"objbacker_read_ahead_hits_total", counter, "Blocks read ahead that a read then used.", func(s *blockmap.Stats, _ *objstore.Counts) int64 { return s.ReadAheadHits }},
	{"objbacker_read_ahead_wasted_total", counter, "Blocks read ahead that were evicted unused.", func(s *blockmap.Stats, _ *objstore.Counts) int64 { return s.ReadAheadWasted }},
	{"objbacker_upload_errors_total", counter, "Block uploads that failed after retries.", func(s *blockmap.Stats, _ *objstore.Counts) int64 { return s.UploadErrors }},
	{"objbacker_writer_stalls_total", counter, "Times a request waited for dirty blocks to drain.", func(s *blockmap.Stats, _ *objstore.Counts) int64 { return s.Stalls }},
	{"objbacker_cache_bytes", gauge, "Memory counted against the cache size.", func(s *blockmap.Stats, _ *objstore.Counts) int64 { return s.CacheBytes }},
	{"objbacker_buffer_bytes", gauge, "Memory of block buffers in use, outside the Go heap.", func(s *blockmap.Stats, _ *objstore.Counts) int64 { return s.BufferBytes }},
	{"objbacker_buffer_peak_bytes", gauge, "Highest memory of block buffers in use so far.", func(s *blockmap.Stats, _ *objstore.Counts) int64 { return s.BufferPeakBytes }},
	{"objbacker_dirty_blocks", gauge, "Blocks written but not yet durable.", func(s *blockmap.Stats, _ *objstore.Counts) int64 { return s.DirtyBlocks }},
	{"objbacker_blocks_present", gauge, "Block objects in the store.", func(s *blockmap.Stats, _ *objstore.Counts) int64 { return s.BlocksPresent }},
	{"objbacker_listed_keys", gauge, "Keys the start-up listing has seen so far.", func(s *blockmap.Stats, _ *objstore.Counts) int64 { return s.ListedKeys }},
	{"objbacker_listing", gauge, "1 while the start-up listing runs: blocks not yet listed are fetched to find out.", func(s *blockmap.Stats, _ *objstore.Counts) int64 {
		if s.Listing {
			return 1
		}
		return 0
	}},
	{"objbacker_store_gets_total", counter, "GET requests sent to the store.", func(_ *blockmap.Stats, c *objstore.Counts) int64 { return c.Gets.Load() }},
	{"objbacker_store_puts_total", counter, "PUT requests sent to the store.", func(_ *blockmap.Stats, c *objstore.Counts) int64 { return c.Puts.Load() }},
	{"objbacker_store_deletes_total", counter, "DELETE requests sent to the store.", func(_ *blockmap.Stats, c *objstore.Counts) int64 { return c.Deletes.Load() }},
	{"objbacker_store_errors_total", counter, "Store requests that failed.", func(_ *blockmap.Stats, c *objstore.Counts) int64 { return c.Errors.Load() }},
	{"objbacker_store_read_bytes_total", counter, "Bytes received from the store.", func(_ *blockmap.Stats, c *objstore.Counts) int64 { return c.BytesRead.Load() }},
	{"objbacker_store_written_bytes_total", counter, "Bytes sent to the store.", func(_ *blockmap.Stats, c *objstore.Counts) int64 { return c.BytesWritten.Load() }},
}

// exportDescs are exportMetrics' descriptions, in the same order.
var exportDescs = func() []*prometheus.Desc {
	descs := make([]*prometheus.Desc, len(exportMetrics))
	for i, m := range exportMetrics {
		descs[i] = prometheus.NewDesc(m.name, m.help, []string{"export"}, nil)
	}
	return descs
}()

// exportCollector serves exportMetrics for each export, read at each
// scrape from the counts the device and the store keep anyway: nothing is
// counted twice.
type exportCollector []*openedExport

func (exportCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range exportDescs {
		ch <- d
	}
}

func (ec exportCollector) Collect(ch chan<- prometheus.Metric) {
	for _, e := range ec {
		s := e.device.Stats()
		for i, m := range exportMetrics {
			ch <- prometheus.MustNewConstMetric(exportDescs[i], m.kind, float64(m.value(&s, e.counts)), e.spec.Name)
		}
	}
}
