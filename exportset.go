package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/objbacker/objbacker/blockmap"
	"github.com/objbacker/objbacker/internal/bytesize"
	"github.com/objbacker/objbacker/internal/inflight"
	"github.com/objbacker/objbacker/objstore/storeurl"
)

// urlForms is the part of a serving command's help that describes
// --export and the recorded geometry.
const urlForms = `URL forms:
  mem://                                   in memory, lost at exit
  file:///abs/dir   file://./rel/dir        one file per block object
  s3://bucket[/prefix][?endpoint=URL&region=R&path_style=true|false]
  gs://bucket[/prefix][?endpoint=URL]
  azblob://container[/prefix][?account=NAME&endpoint=URL]
Any URL also takes hash_prefix=true: s3backer's --blockHashPrefix names.
For benchmarks, any URL also takes latency=30ms, bandwidth=100M (bytes per
second, per request) and jitter=0.1: a simulated network (mem://?latency=30ms).

A device's size and block size are recorded in its bucket the first time;
later runs need neither --size nor --block-size, and a mismatch is an error.`

// exportFlags are the flags of every command that serves exports (serve
// over NBD, vdev to the ZFS module): which buckets, and how their devices
// behave.
func exportFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "export", Usage: "`NAME=URL` of an export (repeatable)", EnvVars: []string{"OBJBACKER_EXPORT"}},
		&cli.StringFlag{Name: "size", Usage: "device `SIZE` for a bucket that records none (e.g. 100G)", EnvVars: []string{"OBJBACKER_SIZE"}},
		&cli.StringFlag{Name: "block-size", Usage: "block (object) `SIZE`, a power of two from 4K to 64M; default 1M for a new bucket", EnvVars: []string{"OBJBACKER_BLOCK_SIZE"}},
		&cli.StringFlag{Name: "cache-size", Value: "256M", Usage: "memory `SIZE` for cached and dirty blocks, per export (a mem:// export keeps every block)", EnvVars: []string{"OBJBACKER_CACHE_SIZE"}},
		&cli.IntFlag{Name: "parallel", Value: blockmap.DefaultParallel, Usage: "store requests in flight per export (serve also gives each export 2 x N MiB of its cache for NBD requests in flight)", EnvVars: []string{"OBJBACKER_PARALLEL"}},
		&cli.IntFlag{Name: "read-ahead", Usage: "largest read-ahead window, in blocks, that a sequential reader's grows to, at most a quarter of the cache (0: --parallel, -1: off)", EnvVars: []string{"OBJBACKER_READ_AHEAD"}},
		&cli.DurationFlag{Name: "write-delay", Value: blockmap.DefaultWriteDelay, Usage: "longest time a partly written block waits for more writes before it is uploaded", EnvVars: []string{"OBJBACKER_WRITE_DELAY"}},
		&cli.BoolFlag{Name: "read-only", Usage: "refuse writes, trims and zeroes", EnvVars: []string{"OBJBACKER_READ_ONLY"}},
		&cli.BoolFlag{Name: "create-dir", Usage: "create the directory of a file:// export if it does not exist (the default export's always is)", EnvVars: []string{"OBJBACKER_CREATE_DIR"}},
		&cli.BoolFlag{Name: "force", Usage: "serve buckets marked as mounted (by an objbacker that crashed, or by s3backer)", EnvVars: []string{"OBJBACKER_FORCE"}},
		&cli.StringFlag{Name: "metrics", Usage: "`ADDR` to serve Prometheus metrics on (/metrics); off when empty", EnvVars: []string{"OBJBACKER_METRICS"}},
		&cli.DurationFlag{Name: "stop-timeout", Value: DefaultStopTimeout, Usage: "on SIGINT or SIGTERM, give up flushing once no block has reached the store for this long: FLUSH FAILED, exit 1, the mount marker stays (0: wait as long as it takes)", EnvVars: []string{"OBJBACKER_STOP_TIMEOUT"}},
	}
}

// exportSet is the open exports of a serving command.
type exportSet struct {
	opened []*openedExport
	log    *slog.Logger
}

// openExports opens the devices that exportFlags describe and sets the
// memory limit for them. With payloads set, each export's request payload
// budget (payloadBudget) is taken out of its cache, so that the two
// together stay within --cache-size. On error, those already open are
// closed.
func openExports(ctx context.Context, c *cli.Context, log *slog.Logger, payloads bool) (*exportSet, error) {
	values := c.StringSlice("export")
	implicit := len(values) == 0
	if implicit {
		values = []string{defaultExport}
	}
	specs, err := parseExports(values)
	if err != nil {
		return nil, err
	}
	var geo blockmap.Geometry
	if geo.Size, err = sizeFlag(c, "size"); err != nil {
		return nil, err
	}
	if geo.BlockSize, err = sizeFlag(c, "block-size"); err != nil {
		return nil, err
	}
	cacheSize, err := sizeFlag(c, "cache-size")
	if err != nil {
		return nil, err
	}
	if c.Int("parallel") < 1 {
		return nil, usageError{fmt.Errorf("--parallel %d: want at least 1", c.Int("parallel"))}
	}
	cfg := blockmap.Config{
		Geometry:   geo,
		CacheSize:  cacheSize,
		Parallel:   c.Int("parallel"),
		ReadAhead:  c.Int("read-ahead"),
		WriteDelay: c.Duration("write-delay"),
		Force:      c.Bool("force"),
		// Serve as soon as the geometry and the mount marker are
		// settled: a bucket of 10^8 blocks takes hours to list.
		ListInBackground: true,
	}
	if implicit {
		cfg.DefaultSize = defaultSize
	}
	var budget int64
	if payloads {
		budget = payloadBudget(cfg.CacheSize, cfg.Parallel)
		cfg.CacheSize -= budget
	}

	// A file:// directory that does not exist is most likely a typo: it
	// is created only on request, or for the zero-flag default.
	opts := storeurl.Options{Parallel: cfg.Parallel, CreateDir: implicit || c.Bool("create-dir")}
	set := &exportSet{log: log}
	for _, spec := range specs {
		e, err := openExport(ctx, spec, cfg, opts, log.With("export", spec.Name))
		if err != nil {
			set.close()
			return nil, err
		}
		e.payloadBudget = budget
		set.opened = append(set.opened, e)
	}
	setMemoryLimit(set.opened, log)
	return set, nil
}

// payloadBudget is the memory for one export's request payloads in
// flight (nbd.Export.MaxBuffered): enough for twice --parallel requests of
// 1 MiB, the size the README's max_sectors_kb makes every kernel request,
// so that a connection's half of it keeps the store's parallelism busy
// (throughput at a store's latency is bytes in flight / round trip); at
// least inflight.DefaultBudget, but never more than half the cache it is
// taken from.
func payloadBudget(cacheSize int64, parallel int) int64 {
	return min(max(2*int64(parallel)<<20, inflight.DefaultBudget), cacheSize/2)
}

// logReady says what each export serves; more adds attributes of the
// front end (how a client reaches it).
func (s *exportSet) logReady(more func(*openedExport) []any) {
	for _, e := range s.opened {
		g := e.device.Geometry()
		args := []any{"export", e.spec.Name, "url", redact(e.spec.URL),
			"size", bytesize.Format(g.Size), "block_size", bytesize.Format(g.BlockSize)}
		if e.payloadBudget > 0 {
			args = append(args, "request_memory", bytesize.Format(e.payloadBudget))
		}
		if more != nil {
			args = append(args, more(e)...)
		}
		s.log.Info("export ready", args...)
	}
}

// close flushes and closes every export. A failed flush means acknowledged
// writes did not reach the store: it is logged loudly and returned. A
// marker that could not be removed after a complete flush is said as such.
// Either is a failure of the stop (exit code 1), whatever the store's
// error: an access refused now is no bad input.
func (s *exportSet) close() error {
	var errs []error
	for _, e := range s.opened {
		err := e.close()
		switch {
		case err == nil:
			continue
		case errors.Is(err, blockmap.ErrMountNotReleased):
			s.log.Error("mount marker not removed: every acknowledged write reached the store, but the next start will be refused until reset-mounted", "export", e.spec.Name, "err", err)
		default:
			s.log.Error("FLUSH FAILED: acknowledged writes did not reach the store", "export", e.spec.Name, "err", err)
		}
		errs = append(errs, fmt.Errorf("export %s: %w", e.spec.Name, err))
	}
	if len(errs) == 0 {
		return nil
	}
	return stopError{errors.Join(errs...)}
}

// stopError marks a failure of the stop: exit code 1.
type stopError struct{ err error }

func (e stopError) Error() string { return e.err.Error() }
func (e stopError) Unwrap() error { return e.err }
