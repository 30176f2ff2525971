package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"

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
		Flags: append(append([]cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:10809", Usage: "`ADDR` to accept NBD clients on", EnvVars: []string{"OBJBACKER_LISTEN"}},
		}, exportFlags()...),
			&cli.UintFlag{Name: "min-block-size", Value: 512, Usage: "smallest request advertised to NBD clients: 512 or 4096", EnvVars: []string{"OBJBACKER_MIN_BLOCK_SIZE"}},
		),
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

	// The addresses first: a taken or mistyped one must fail before any
	// bucket is claimed, created or given a size.
	ln, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		return usageError{fmt.Errorf("--listen %s: %w", c.String("listen"), err)}
	}
	defer ln.Close()
	metricsLn, err := listenMetrics(c)
	if err != nil {
		return err
	}

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
	srv := &nbd.Server{Exports: exports, Log: log}
	var nbdm []prometheus.Collector
	if metricsLn != nil {
		m := newNBDMetrics(srv)
		srv.Observe = m.observe
		nbdm = append(nbdm, m)
	}
	stopMetrics := serveMetrics(metricsLn, opened, log, nbdm...)
	defer stopMetrics()
	set.logReady(func(e *openedExport) []any { return []any{"uri", nbdURI(ln.Addr(), e.spec.Name)} })
	log.Info("serving", "listen", ln.Addr().String(), "exports", len(opened))
	// Under systemd (Type=notify, scripts/systemd): units ordered after
	// this one, such as objbacker attach, start once the exports answer.
	notifySystemd(log, sddaemon.SdNotifyReady)

	stopped := set.watchStop(ctx, c.Duration("stop-timeout"))
	serveErr := srv.Serve(ctx, ln)
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

// nbdURI is the URI a client on this host gives to reach export, as
// libnbd, qemu and nbdinfo take it: nbd://127.0.0.1:10809/disk0. A
// wildcard listen address is reached through localhost.
func nbdURI(addr net.Addr, export string) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "nbd://" + addr.String() + "/" + export
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return (&url.URL{Scheme: "nbd", Host: net.JoinHostPort(host, port), Path: "/" + export}).String()
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
