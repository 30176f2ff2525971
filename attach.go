package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/objbacker/objbacker/nbd/attach"
)

func attachCommand() *cli.Command {
	return &cli.Command{
		Name:      "attach",
		Usage:     "attach an NBD export to /dev/nbdN over netlink and keep it connected across server restarts",
		ArgsUsage: "nbd://HOST:PORT/EXPORT",
		Description: `Connects --connections sockets to the export, configures the device with
them over the kernel's generic-netlink NBD interface (size, block size, the
server's flags, --timeout, --dead-conn-timeout), sets max_sectors_kb so that
a 1 MiB request is one request, and stays in the foreground as a supervisor.
When connections die it dials again (capped, jittered backoff) and hands the
device the new sockets (NBD_CMD_RECONFIGURE) if the server is the same daemon
or one that continues it after a clean stop; requests wait in the kernel for
up to --dead-conn-timeout meanwhile. A server that may have lost acknowledged
writes (its incarnation does not continue the attached one) is never
reconnected: the device then fails its I/O after the dead-connection
timeout and attach exits 1.

SIGINT or SIGTERM stops the supervisor and leaves the device attached;
objbacker detach disconnects it.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "device", Usage: "the device, /dev/nbdN (default: the first free one)"},
			&cli.IntFlag{Name: "connections", Value: 4, Usage: "connections (sockets) per device"},
			&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "per-request timeout: an unanswered request is sent again on another connection"},
			&cli.DurationFlag{Name: "dead-conn-timeout", Value: 120 * time.Second, Usage: "how long the kernel holds requests while no connection is alive"},
			&cli.IntFlag{Name: "block-size", Usage: "logical block size, 512-4096 (default: the server's preferred size)"},
			&cli.IntFlag{Name: "max-sectors-kb", Value: 1024, Usage: "largest request in KiB (0: leave the kernel's)"},
			&cli.DurationFlag{Name: "poll", Value: time.Second, Usage: "how often the connections are checked, besides the kernel's link-dead events"},
		},
		Action: runAttach,
	}
}

func detachCommand() *cli.Command {
	return &cli.Command{
		Name:      "detach",
		Usage:     "disconnect /dev/nbdN (NBD_CMD_DISCONNECT)",
		ArgsUsage: "/dev/nbdN",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError{errors.New("detach takes one device, /dev/nbdN")}
			}
			index, err := attach.ParseDevice(c.Args().First())
			if err != nil {
				return usageError{err}
			}
			k, err := attach.DialKernel()
			if err != nil {
				return err
			}
			defer k.Close()
			if err := k.Disconnect(index); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "/dev/nbd%d disconnected\n", index)
			return nil
		},
	}
}

// parseNBDURL reads nbd://HOST:PORT/EXPORT (port 10809 by default).
func parseNBDURL(s string) (addr, export string, err error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "nbd" || u.Host == "" {
		return "", "", fmt.Errorf("%q: want nbd://HOST:PORT/EXPORT", s)
	}
	addr = u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "10809")
	}
	return addr, strings.TrimPrefix(u.Path, "/"), nil
}

func runAttach(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError{errors.New("attach takes one URL, nbd://HOST:PORT/EXPORT")}
	}
	addr, export, err := parseNBDURL(c.Args().First())
	if err != nil {
		return usageError{err}
	}
	index := -1
	if d := c.String("device"); d != "" {
		if index, err = attach.ParseDevice(d); err != nil {
			return usageError{err}
		}
	}
	if c.Int("connections") < 1 {
		return usageError{errors.New("--connections must be at least 1")}
	}
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	ctx, stop := stopOnSignal(c.Context, c.App.ErrWriter)
	defer stop()

	k, err := attach.DialKernel()
	if err != nil {
		return err
	}
	defer k.Close()
	// Join the multicast group before the device exists, so that no event
	// is missed.
	linkDead, err := attach.WatchLinkDead(ctx)
	if err != nil {
		log.Warn("not watching the kernel's link-dead events; polling only", "err", err)
	}
	s := attach.NewSupervisor(k, attach.Options{
		Addr:            addr,
		Export:          export,
		Index:           index,
		Connections:     c.Int("connections"),
		BlockSize:       uint32(c.Int("block-size")),
		Timeout:         c.Duration("timeout"),
		DeadConnTimeout: c.Duration("dead-conn-timeout"),
		MaxSectorsKB:    c.Int("max-sectors-kb"),
		Poll:            c.Duration("poll"),
		Log:             log,
	})
	if err := s.Attach(ctx); err != nil {
		return err
	}
	// For scripts: the device on stdout, once it is usable.
	fmt.Fprintln(c.App.Writer, s.Device())
	if err := s.Run(ctx, linkDead); err != nil {
		return err
	}
	log.Info("supervisor stopped; the device stays attached", "device", s.Device())
	return nil
}
