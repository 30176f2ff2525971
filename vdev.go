package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/objbacker/objbacker/kernel"
)

// vdev is a command of its own rather than a serve flag: it serves no NBD
// clients (--listen and --min-block-size mean nothing to it), its device
// is one path, and its failure modes and help are the ZFS module's.
func vdevCommand() *cli.Command {
	return &cli.Command{
		Name:  "vdev",
		Usage: "serve buckets to the ZFS module's objbacker vdevs until SIGINT or SIGTERM",
		Description: `Registers each --export NAME=URL with the objbacker-patched ZFS module
through its character device, then serves the module's requests, so that
"zpool create tank objbacker:NAME ..." stores the pool's vdevs in buckets.
Without the patched module, use "objbacker serve" and nbd-client instead
(docs/vdev.md explains both paths). Without --export, serves "disk0" on a
local directory, ./objbacker-data/disk0, of 16 GiB unless --size says
otherwise.

On SIGINT or SIGTERM it finishes the requests it has read, flushes every
dirty block, tells the module whether every acknowledged write is durable,
and exits; a failed flush logs FLUSH FAILED and exits with code 1.

` + urlForms,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "device", Value: "/dev/" + kernel.DeviceName, Usage: "`PATH` of the module's character device (a Unix socket speaking the same protocol also works, for tests)", EnvVars: []string{"OBJBACKER_DEVICE"}},
		}, exportFlags()...),
		Action: vdev,
	}
}

func vdev(c *cli.Context) error {
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	if c.NArg() > 0 {
		return usageError{fmt.Errorf("vdev takes no arguments (got %q); use --export NAME=URL", c.Args().First())}
	}
	// The device and the metrics address first: without them there is
	// nothing to serve, and opening the exports would mark their buckets
	// for nothing.
	path := c.String("device")
	dev, err := openVdevDevice(path)
	if err != nil {
		return err
	}

	metricsLn, err := listenMetrics(c)
	if err != nil {
		dev.Close()
		return err
	}

	ctx, stop := stopOnSignal(c.Context, c.App.ErrWriter)
	defer stop()

	set, err := openExports(ctx, c, log, false)
	if err != nil {
		dev.Close()
		if metricsLn != nil {
			metricsLn.Close()
		}
		return err
	}
	stopMetrics := serveMetrics(metricsLn, set.opened, log)
	defer stopMetrics()
	var exports []*kernel.Export
	for _, e := range set.opened {
		exports = append(exports, &kernel.Export{
			Name:      e.spec.Name,
			Backend:   e.device,
			BlockSize: uint32(e.device.Geometry().BlockSize),
			ReadOnly:  c.Bool("read-only"),
		})
	}
	set.logReady(nil)
	log.Info("serving the ZFS module", "device", path, "exports", len(exports))

	srv := &kernel.Server{Exports: exports, Log: log}
	stopped := set.watchStop(ctx, c.Duration("stop-timeout"))
	serveErr := srv.Serve(ctx, dev)
	log.Info("stopping: flushing dirty blocks")
	flushErr := set.close()
	stopped()
	if err := errors.Join(serveErr, flushErr); err != nil {
		return err
	}
	log.Info("stopped cleanly")
	return nil
}

// openVdevDevice opens the module's character device, or connects to a
// Unix socket at path. A missing or forbidden device is the user's to fix
// (load the module, run as root, correct --device), like a missing bucket
// or refused credentials, hence usageError.
func openVdevDevice(path string) (io.ReadWriteCloser, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, usageError{fmt.Errorf("--device %s does not exist: load the objbacker-patched ZFS module (docs/vdev.md), or use objbacker serve with nbd-client", path)}
	}
	if err != nil {
		return nil, usageError{fmt.Errorf("--device %s: %w", path, err)}
	}
	switch {
	case fi.Mode()&fs.ModeSocket != 0:
		conn, err := net.Dial("unix", path)
		if err != nil {
			return nil, fmt.Errorf("--device %s: %w", path, err)
		}
		return conn, nil
	case fi.Mode()&fs.ModeCharDevice != 0:
		// O_RDWR: requests come in, replies go out. The runtime's poller
		// takes the device when its driver supports poll, which gives the
		// reads the deadlines a graceful stop needs.
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if errors.Is(err, fs.ErrPermission) {
			return nil, usageError{fmt.Errorf("--device %s: %w (run as root)", path, err)}
		}
		if err != nil {
			return nil, fmt.Errorf("--device %s: %w", path, err)
		}
		return f, nil
	default:
		return nil, usageError{fmt.Errorf("--device %s is not a character device (the objbacker-patched ZFS module creates /dev/%s)", path, kernel.DeviceName)}
	}
}
