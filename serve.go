package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"

	"github.com/objbacker/objbacker/blockmap"
	"github.com/objbacker/objbacker/internal/bytesize"
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

` + urlForms,
		Flags: append(append(append(listenFlags(), exportFlags()...),
			&cli.UintFlag{Name: "min-block-size", Value: 512, Usage: "smallest request advertised to NBD clients: 512 or 4096", EnvVars: []string{"OBJBACKER_MIN_BLOCK_SIZE"}},
		), tlsFlags()...),
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
	minBlock := uint32(c.Uint("min-block-size"))
	if minBlock != 512 && minBlock != 4096 {
		return usageError{fmt.Errorf("--min-block-size %d: want 512 or 4096", minBlock)}
	}

	// The certificates are read, and the addresses bound, first: a bad
	// file or a taken or mistyped address must fail before any bucket is
	// claimed, created or given a size.
	tlsSet, err := parseTLSFlags(c)
	if err != nil {
		return err
	}
	lns, err := listenAll(c)
	if err != nil {
		return err
	}
	defer closeListeners(lns)
	metricsLn, err := listenMetrics(c)
	if err != nil {
		return err
	}
	defer reloadOnSignal(func() { tlsSet.reload(log) })()

	ctx, stop := stopOnSignal(c.Context, c.App.ErrWriter)
	defer stop()

	set, err := openExports(ctx, c, log, true)
	if err != nil {
		if metricsLn != nil {
			metricsLn.Close()
		}
		return err
	}
	opened := set.opened

	var exports []*nbd.Export
	for _, e := range opened {
		g := e.device.Geometry()
		exports = append(exports, &nbd.Export{
			Name:               e.spec.Name,
			Description:        exportDescription(e.spec.URL, g.BlockSize, e.device),
			Backend:            e.device,
			ReadOnly:           c.Bool("read-only"),
			MinBlockSize:       minBlock,
			PreferredBlockSize: uint32(min(g.BlockSize, nbd.DefaultMaxBlockSize)),
			MaxBuffered:        e.payloadBudget,
		})
	}
	srv := &nbd.Server{Exports: exports, Log: log, TLSConfig: tlsSet.config(), TLSRequired: tlsSet != nil && tlsSet.required}
	var nbdm []prometheus.Collector
	if metricsLn != nil {
		m := newNBDMetrics(srv)
		srv.Observe = m.observe
		nbdm = append(nbdm, m)
	}
	stopMetrics := serveMetrics(metricsLn, opened, log, nbdm...)
	defer stopMetrics()
	set.logReady(func(e *openedExport) []any {
		args := []any{"uri", lns[0].uri(e.spec.Name, tlsSet != nil)}
		if len(lns) > 1 {
			var more []string
			for _, ln := range lns[1:] {
				more = append(more, ln.uri(e.spec.Name, tlsSet != nil))
			}
			args = append(args, "other_uris", more)
		}
		return args
	})
	if tlsSet != nil {
		log.Info("TLS", tlsSet.describe()...)
	}
	log.Info("serving", "listen", listenerAddrs(lns), "exports", len(opened))
	// Under systemd (Type=notify, scripts/systemd): units ordered after
	// this one, such as objbacker attach, start once the exports answer.
	notifySystemd(log, sddaemon.SdNotifyReady)

	stopped := set.watchStop(ctx, c.Duration("stop-timeout"))
	serveErr := serveAll(ctx, srv, lns)
	notifySystemd(log, sddaemon.SdNotifyStopping)
	log.Info("stopping: flushing dirty blocks")
	flushErr := set.close()
	stopped()
	if serveErr != nil && !errors.Is(serveErr, context.Canceled) {
		return errors.Join(serveErr, flushErr)
	}
	if flushErr != nil {
		return flushErr
	}
	log.Info("stopped cleanly")
	return nil
}

// serveAll serves srv on every listener until ctx is cancelled or one
// of them fails, which stops the others.
func serveAll(ctx context.Context, srv *nbd.Server, lns []*nbdListener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(lns))
	var wg sync.WaitGroup
	for i, ln := range lns {
		wg.Go(func() {
			if errs[i] = srv.Serve(ctx, ln); errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// exportDescription is an export's NBD_INFO_DESCRIPTION: what it serves,
// then the device's incarnation tag (blockmap.IncarnationTag), which
// objbacker attach reads to tell a clean restart from a crash.
func exportDescription(url string, blockSize int64, d *blockmap.Device) string {
	return fmt.Sprintf("objbacker %s, %s blocks %s", redact(url), bytesize.Format(blockSize), blockmap.IncarnationTag(d.Incarnation()))
}

// notifySystemd tells systemd of a state change if it started the daemon
// with a notification socket ($NOTIFY_SOCKET); otherwise it does nothing.
func notifySystemd(log *slog.Logger, state string) {
	if _, err := sddaemon.SdNotify(false, state); err != nil {
		log.Warn("notifying systemd", "state", state, "err", err)
	}
}
