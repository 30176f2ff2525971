package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
)

const (
	defaultListen     = "127.0.0.1:10809"
	defaultListenMode = "0600"
	// unixPrefix marks a --listen address that is a Unix socket's path.
	unixPrefix = "unix:"
)

// listenFlags are serve's flags for where NBD clients connect.
func listenFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "listen", Usage: "`ADDR` to accept NBD clients on: HOST:PORT, or unix:PATH for a Unix socket; repeat the flag to listen on several (default: " + defaultListen + ")", EnvVars: []string{"OBJBACKER_LISTEN"}},
		&cli.StringFlag{Name: "listen-mode", Value: defaultListenMode, Usage: "permission bits (octal `MODE`) of the unix: sockets; a client needs write permission to connect", EnvVars: []string{"OBJBACKER_LISTEN_MODE"}},
		&cli.StringFlag{Name: "listen-owner", Usage: "`USER[:GROUP]` (names or numbers) to own the unix: sockets; empty: the daemon's", EnvVars: []string{"OBJBACKER_LISTEN_OWNER"}},
	}
}

// nbdListener is one bound --listen address.
type nbdListener struct {
	net.Listener
	// path is a Unix socket's file, removed at close if it is still ours;
	// info identifies it.
	path   string
	info   fs.FileInfo
	remove sync.Once
}

// listenAll binds every --listen address before anything else starts, so
// that a taken or mistyped one fails at once (exit 2). On error, those
// already bound are closed.
func listenAll(c *cli.Context) ([]*nbdListener, error) {
	addrs := c.StringSlice("listen")
	if len(addrs) == 0 {
		addrs = []string{defaultListen}
	}
	var unix bool
	for _, a := range addrs {
		unix = unix || strings.HasPrefix(a, unixPrefix)
	}
	var perm socketPerm
	if unix {
		var err error
		if perm, err = parseSocketPerm(c.String("listen-mode"), c.String("listen-owner")); err != nil {
			return nil, usageError{err}
		}
	} else {
		for _, f := range []string{"listen-mode", "listen-owner"} {
			if c.IsSet(f) {
				return nil, usageError{fmt.Errorf("--%s applies to unix: listen addresses, and no --listen is one", f)}
			}
		}
	}
	var lns []*nbdListener
	for _, a := range addrs {
		ln, err := listenOne(a, perm)
		if err != nil {
			closeListeners(lns)
			return nil, usageError{fmt.Errorf("--listen %s: %w", a, err)}
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

func listenOne(addr string, perm socketPerm) (*nbdListener, error) {
	path, ok := strings.CutPrefix(addr, unixPrefix)
	if !ok {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		return &nbdListener{Listener: ln}, nil
	}
	return listenUnix(path, perm)
}

// listenUnix binds a Unix socket at path with perm. The socket file is
// created with at most perm's bits (fchmod before bind: the umask can only
// take bits away), and with only the owner's bits while another owner is
// to be set, then given its owner and full mode: no client ever finds it
// more open than asked. A socket file at path that nobody answers on, left
// by a daemon that died, is replaced; any other file, or a socket that
// answers, is an error.
func listenUnix(path string, perm socketPerm) (*nbdListener, error) {
	if path == "" {
		return nil, errors.New("no socket path after unix:")
	}
	// Absolute, for the URIs in the log: a client elsewhere can use them.
	path, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if err := checkStaleSocket(path); err != nil {
		return nil, err
	}
	chown := perm.uid >= 0 || perm.gid >= 0
	initial := perm.mode
	if chown {
		initial &= 0o700
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) { err = syscall.Fchmod(int(fd), uint32(initial)) }); cerr != nil {
			return cerr
		}
		return err
	}}
	ln, err := lc.Listen(context.Background(), "unix", path)
	if err != nil {
		return nil, err
	}
	ul := ln.(*net.UnixListener)
	// Removed by nbdListener.Close, and only if it is still this socket.
	ul.SetUnlinkOnClose(false)
	fail := func(err error) (*nbdListener, error) {
		ul.Close()
		os.Remove(path)
		return nil, err
	}
	if chown {
		if err := os.Lchown(path, perm.uid, perm.gid); err != nil {
			return fail(fmt.Errorf("setting the socket's owner: %w", err))
		}
	}
	if err := os.Chmod(path, perm.mode); err != nil {
		return fail(err)
	}
	info, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	return &nbdListener{Listener: ln, path: path, info: info}, nil
}

// checkStaleSocket makes path free to bind: nothing there, or a socket
// that refuses connections (its daemon is gone), which it removes.
func checkStaleSocket(path string) error {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if info.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket; not replacing it", path)
	}
	nc, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		nc.Close()
		return fmt.Errorf("%s is in use: another process answers on it", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s exists and cannot be probed (%w); not replacing it", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing the stale socket %s: %w", path, err)
	}
	return nil
}

// Close closes the listener and removes its socket file if the file is
// still the one it made (another daemon may have replaced it since).
func (l *nbdListener) Close() error {
	err := l.Listener.Close()
	if l.path == "" {
		return err
	}
	l.remove.Do(func() {
		if info, serr := os.Lstat(l.path); serr == nil && os.SameFile(info, l.info) {
			if rerr := os.Remove(l.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				err = errors.Join(err, rerr)
			}
		}
	})
	return err
}

func closeListeners(lns []*nbdListener) {
	for _, ln := range lns {
		ln.Close()
	}
}

// socketPerm is --listen-mode and --listen-owner; -1 leaves an id as is.
type socketPerm struct {
	mode     fs.FileMode
	uid, gid int
}

func parseSocketPerm(mode, owner string) (socketPerm, error) {
	p := socketPerm{uid: -1, gid: -1}
	m, err := strconv.ParseUint(mode, 8, 32)
	if err != nil || m > 0o777 {
		return p, fmt.Errorf("--listen-mode %q: want octal permission bits such as 0660", mode)
	}
	p.mode = fs.FileMode(m)
	if owner == "" {
		return p, nil
	}
	u, g, _ := strings.Cut(owner, ":")
	if u != "" {
		if p.uid, err = lookupID(u, func(name string) (string, error) {
			usr, err := user.Lookup(name)
			if err != nil {
				return "", err
			}
			return usr.Uid, nil
		}); err != nil {
			return p, fmt.Errorf("--listen-owner %q: %w", owner, err)
		}
	}
	if g != "" {
		if p.gid, err = lookupID(g, func(name string) (string, error) {
			grp, err := user.LookupGroup(name)
			if err != nil {
				return "", err
			}
			return grp.Gid, nil
		}); err != nil {
			return p, fmt.Errorf("--listen-owner %q: %w", owner, err)
		}
	}
	return p, nil
}

// lookupID takes a number as it is and looks a name up.
func lookupID(s string, lookup func(string) (string, error)) (int, error) {
	if n, err := strconv.ParseUint(s, 10, 31); err == nil {
		return int(n), nil
	}
	id, err := lookup(s)
	if err != nil {
		return -1, err
	}
	n, err := strconv.ParseUint(id, 10, 31)
	if err != nil {
		return -1, fmt.Errorf("%s has id %q", s, id)
	}
	return int(n), nil
}

// uri is the URI a client on this host gives to reach export on l, as
// libnbd, qemu and nbdinfo take it: nbd://127.0.0.1:10809/disk0, or
// nbd+unix:///disk0?socket=/run/objbacker.sock; nbds and nbds+unix with
// tls. A wildcard listen address is reached through localhost.
func (l *nbdListener) uri(export string, tls bool) string {
	scheme := "nbd"
	if tls {
		scheme = "nbds"
	}
	if l.path != "" {
		u := url.URL{Scheme: scheme + "+unix", Path: "/" + export}
		// Slashes need no escaping in a query; the path reads better.
		return u.String() + "?socket=" + strings.ReplaceAll(url.QueryEscape(l.path), "%2F", "/")
	}
	addr := l.Addr()
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return scheme + "://" + addr.String() + "/" + export
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return (&url.URL{Scheme: scheme, Host: net.JoinHostPort(host, port), Path: "/" + export}).String()
}

// listenerAddrs is the "serving" line's addresses.
func listenerAddrs(lns []*nbdListener) string {
	var s []string
	for _, ln := range lns {
		if ln.path != "" {
			s = append(s, unixPrefix+ln.path)
		} else {
			s = append(s, ln.Addr().String())
		}
	}
	return strings.Join(s, ",")
}
