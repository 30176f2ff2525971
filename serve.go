package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/objbacker/objbacker/blockmap"
	"github.com/objbacker/objbacker/nbd"
)

const (
	defaultExport = "disk0=file://./objbacker-data/disk0"
	defaultSize   = 16 << 30
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve buckets as NBD exports until SIGINT or SIGTERM",
		Description: `Each --export NAME=URL is one NBD export backed by one bucket (or bucket
and prefix). Without --export, serves "disk0" on a local directory,
./objbacker-data/disk0, of 16 GiB unless --size says otherwise.

URL forms:
  mem://                                   in memory, lost at exit
  file:///abs/dir   file://./rel/dir        one file per block object
  s3://bucket[/prefix][?endpoint=URL&region=R&path_style=true|false]
  gs://bucket[/prefix][?endpoint=URL]
  azblob://container[/prefix][?account=NAME&endpoint=URL]
Any URL also takes hash_prefix=true: s3backer's --blockHashPrefix names.

A device's size and block size are recorded in its bucket the first time;
later runs need neither --size nor --block-size, and a mismatch is an error.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:10809", Usage: "`ADDR` to accept NBD clients on", EnvVars: []string{"OBJBACKER_LISTEN"}},
			&cli.StringSliceFlag{Name: "export", Usage: "`NAME=URL` of an export (repeatable)", EnvVars: []string{"OBJBACKER_EXPORT"}},
			&cli.StringFlag{Name: "size", Usage: "device `SIZE` for a bucket that records none (e.g. 100G)", EnvVars: []string{"OBJBACKER_SIZE"}},
			&cli.StringFlag{Name: "block-size", Usage: "block (object) `SIZE`, a power of two from 4K to 64M; default 1M for a new bucket", EnvVars: []string{"OBJBACKER_BLOCK_SIZE"}},
			&cli.StringFlag{Name: "cache-size", Value: "256M", Usage: "memory `SIZE` for cached and dirty blocks, per export", EnvVars: []string{"OBJBACKER_CACHE_SIZE"}},
			&cli.IntFlag{Name: "parallel", Value: blockmap.DefaultParallel, Usage: "store requests in flight per export", EnvVars: []string{"OBJBACKER_PARALLEL"}},
			&cli.IntFlag{Name: "read-ahead", Value: blockmap.DefaultReadAhead, Usage: "blocks fetched ahead of a sequential reader (0: default, -1: off)", EnvVars: []string{"OBJBACKER_READ_AHEAD"}},
			&cli.DurationFlag{Name: "write-delay", Value: blockmap.DefaultWriteDelay, Usage: "longest time a partly written block waits for more writes before it is uploaded", EnvVars: []string{"OBJBACKER_WRITE_DELAY"}},
			&cli.UintFlag{Name: "min-block-size", Value: 512, Usage: "smallest request advertised to NBD clients: 512 or 4096", EnvVars: []string{"OBJBACKER_MIN_BLOCK_SIZE"}},
			&cli.BoolFlag{Name: "read-only", Usage: "refuse writes, trims and zeroes", EnvVars: []string{"OBJBACKER_READ_ONLY"}},
			&cli.BoolFlag{Name: "force", Usage: "serve buckets marked as mounted (by an objbacker that crashed, or by s3backer)", EnvVars: []string{"OBJBACKER_FORCE"}},
			&cli.StringFlag{Name: "metrics", Usage: "`ADDR` to serve Prometheus metrics on (/metrics); off when empty", EnvVars: []string{"OBJBACKER_METRICS"}},
		},
		Action: serve,
	}
}

func serve(c *cli.Context) error {
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	if c.NArg() > 0 {
		return usageError{fmt.Errorf("serve takes no arguments (got %q); use --export NAME=URL", c.Args().First())}
	}
	values := c.StringSlice("export")
	implicit := len(values) == 0
	if implicit {
		values = []string{defaultExport}
	}
	specs, err := parseExports(values)
	if err != nil {
		return err
	}
	var geo blockmap.Geometry
	if geo.Size, err = sizeFlag(c, "size"); err != nil {
		return err
	}
	if geo.BlockSize, err = sizeFlag(c, "block-size"); err != nil {
		return err
	}
	cacheSize, err := sizeFlag(c, "cache-size")
	if err != nil {
		return err
	}
	minBlock := uint32(c.Uint("min-block-size"))
	if minBlock != 512 && minBlock != 4096 {
		return usageError{fmt.Errorf("--min-block-size %d: want 512 or 4096", minBlock)}
	}
	if c.Int("parallel") < 1 {
		return usageError{fmt.Errorf("--parallel %d: want at least 1", c.Int("parallel"))}
	}
	cfg := blockmap.Config{
		Geometry:   geo,
		CacheSize:  cacheSize,
		Parallel:   c.Int("parallel"),
		ReadAhead:  c.Int("read-ahead"),
		WriteDelay: c.Duration("write-delay"),
		Force:      c.Bool("force"),
	}
	if implicit {
		cfg.DefaultSize = defaultSize
	}

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()

	var opened []*openedExport
	closeAll := func() error {
		var errs []error
		for _, e := range opened {
			if err := e.close(); err != nil {
				log.Error("FLUSH FAILED: acknowledged writes did not reach the store", "export", e.spec.Name, "err", err)
				errs = append(errs, fmt.Errorf("export %s: %w", e.spec.Name, err))
			}
		}
		return errors.Join(errs...)
	}
	for _, spec := range specs {
		e, err := openExport(ctx, spec, cfg, cfg.Parallel, log.With("export", spec.Name))
		if err != nil {
			closeAll()
			return err
		}
		opened = append(opened, e)
	}

	setMemoryLimit(opened, cfg, log)

	var exports []*nbd.Export
	for _, e := range opened {
		g := e.device.Geometry()
		exports = append(exports, &nbd.Export{
			Name:               e.spec.Name,
			Description:        fmt.Sprintf("objbacker %s, %s blocks", redact(e.spec.URL), blockmap.FormatSize(g.BlockSize)),
			Backend:            e.device,
			ReadOnly:           c.Bool("read-only"),
			MinBlockSize:       minBlock,
			PreferredBlockSize: uint32(min(g.BlockSize, nbd.DefaultMaxBlockSize)),
		})
	}
	ln, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		closeAll()
		return usageError{fmt.Errorf("--listen %s: %w", c.String("listen"), err)}
	}
	if addr := c.String("metrics"); addr != "" {
		stopMetrics, err := serveMetrics(addr, opened, log)
		if err != nil {
			ln.Close()
			closeAll()
			return usageError{fmt.Errorf("--metrics %s: %w", addr, err)}
		}
		defer stopMetrics()
	}
	for _, e := range opened {
		g := e.device.Geometry()
		log.Info("export ready", "export", e.spec.Name, "url", redact(e.spec.URL),
			"size", blockmap.FormatSize(g.Size), "block_size", blockmap.FormatSize(g.BlockSize))
	}
	log.Info("serving", "listen", ln.Addr().String(), "exports", len(opened))

	srv := &nbd.Server{Exports: exports, Log: log}
	serveErr := srv.Serve(ctx, ln)
	log.Info("stopping: flushing dirty blocks")
	flushErr := closeAll()
	if serveErr != nil && !errors.Is(serveErr, context.Canceled) {
		return errors.Join(serveErr, flushErr)
	}
	if flushErr != nil {
		return flushErr
	}
	log.Info("stopped cleanly")
	return nil
}
