package attach

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Options configure a Supervisor.
type Options struct {
	Addr   string // host:port
	Export string
	// Index is the device, N of /dev/nbdN; negative: the first free one.
	Index       int
	Connections int
	// BlockSize is the device's logical block size; 0 takes the server's
	// preferred size (see BlockSize).
	BlockSize uint32
	// Timeout is the kernel's per-request timeout: a request not answered
	// in time is sent again on another connection, and the connection it
	// was sent on is declared dead.
	Timeout time.Duration
	// DeadConnTimeout is how long the kernel holds requests while no
	// connection is alive; after it, they fail.
	DeadConnTimeout time.Duration
	// MaxSectorsKB is written to the device's queue/max_sectors_kb; 0
	// leaves it.
	MaxSectorsKB int
	// Poll is how often the connections are checked besides the kernel's
	// link-dead events.
	Poll time.Duration
	// HandshakeTimeout bounds one connection's dial and handshake.
	HandshakeTimeout time.Duration
	Backoff          Backoff
	Log              *slog.Logger

	// For tests: the sysfs root ("/sys"), how to dial, and how to find the
	// states of TCP connections (procTCP).
	Sysfs    string
	Dial     func(ctx context.Context, addr string) (net.Conn, error)
	TCPState func() (map[sockID]uint8, error)
}

// Supervisor attaches one device and keeps its connections alive.
type Supervisor struct {
	opt    Options
	kernel *Kernel
	log    *slog.Logger

	index  int
	export Export
	// incarnation is "" when the server does not say it. Only Attach and
	// Run write it; they hold mu for that, Incarnation for reading it.
	incarnation string
	mu          sync.Mutex
	socks       []sockID
}

// NewSupervisor returns a supervisor that talks to the kernel through k.
func NewSupervisor(k *Kernel, opt Options) *Supervisor {
	if opt.Connections <= 0 {
		opt.Connections = 1
	}
	if opt.Poll <= 0 {
		opt.Poll = time.Second
	}
	if opt.HandshakeTimeout <= 0 {
		opt.HandshakeTimeout = 10 * time.Second
	}
	if opt.Backoff.Min <= 0 {
		opt.Backoff = Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.3}
	}
	if opt.Sysfs == "" {
		opt.Sysfs = "/sys"
	}
	if opt.Dial == nil {
		var d net.Dialer
		opt.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	if opt.TCPState == nil {
		opt.TCPState = procTCP
	}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Supervisor{opt: opt, kernel: k, log: log, index: opt.Index}
}

// Device is the attached device's path.
func (s *Supervisor) Device() string { return fmt.Sprintf("/dev/nbd%d", s.index) }

// Incarnation is the server incarnation the device is attached to ("" if
// the server does not say).
func (s *Supervisor) Incarnation() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.incarnation
}

func (s *Supervisor) setIncarnation(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.incarnation = token
}

var errDetached = errors.New("the device was detached")

// ErrRefused is wrapped by the errors of a reconnect that must not happen:
// a lossy restart, or a server that does not say its incarnation.
var ErrRefused = errors.New("refusing to reconnect")

// Attach dials the connections, checks that they all reached the same
// server incarnation, and configures the device with them.
func (s *Supervisor) Attach(ctx context.Context) error {
	conns, err := s.dialN(ctx, s.opt.Connections)
	if err != nil {
		return err
	}
	defer closeAll(conns)
	e := conns[0].export
	for _, c := range conns[1:] {
		if c.export.Description != e.Description || c.export.Size != e.Size || c.export.Flags != e.Flags {
			return errors.New("the connections reached different servers (a restart during the attach?); try again")
		}
	}
	if s.opt.Connections > 1 && e.Flags&FlagCanMultiConn == 0 {
		return fmt.Errorf("export %q does not allow several connections (no NBD_FLAG_CAN_MULTI_CONN): use --connections 1", s.opt.Export)
	}
	bs, err := BlockSize(e, s.opt.BlockSize)
	if err != nil {
		return err
	}
	if e.Size%uint64(bs) != 0 {
		return fmt.Errorf("export size %d is not a multiple of the block size %d", e.Size, bs)
	}
	fds, err := dupAll(conns)
	if err != nil {
		return err
	}
	defer closeFDs(fds)
	index, err := s.kernel.Connect(Config{
		Index:           s.opt.Index,
		Size:            e.Size,
		BlockSize:       uint64(bs),
		ServerFlags:     e.Flags,
		Timeout:         seconds(s.opt.Timeout),
		DeadConnTimeout: seconds(s.opt.DeadConnTimeout),
	}, fds)
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("%w (the device is in use: pick another --device, or detach it)", err)
		}
		return err
	}
	s.index, s.export = index, e
	s.socks = s.socks[:0]
	for _, c := range conns {
		s.socks = append(s.socks, c.id)
	}
	inc, ok := ParseIncarnation(e.Description)
	if ok {
		s.setIncarnation(inc.Token)
	}
	attrs := []any{"device", s.Device(), "server", s.opt.Addr, "export", s.opt.Export,
		"size", e.Size, "block_size", bs, "flags", fmt.Sprintf("%#x", e.Flags), "connections", len(conns),
		"timeout", s.opt.Timeout, "dead_conn_timeout", s.opt.DeadConnTimeout}
	if ok {
		attrs = append(attrs, "incarnation", inc.Token, "continues", inc.Continues)
	}
	s.log.Info("attached", attrs...)
	if !ok {
		s.log.Warn("the server does not say its incarnation (no [incarnation=… continues=…] at the end of its export description): a clean restart cannot be told from a lossy one, so this device will not be reconnected if its connections die",
			"device", s.Device(), "description", e.Description)
	}
	if s.opt.MaxSectorsKB > 0 {
		kb, err := setMaxSectors(s.opt.Sysfs, index, s.opt.MaxSectorsKB)
		if err != nil {
			s.log.Warn("setting max_sectors_kb", "device", s.Device(), "err", err)
		} else {
			s.log.Info("max_sectors_kb set", "device", s.Device(), "max_sectors_kb", kb)
		}
	}
	return nil
}

// Run watches the connections until ctx ends (nil) or a reconnect is
// refused (an error wrapping ErrRefused). linkDead, if not nil, carries
// the kernel's link-dead events (WatchLinkDead); the connections are also
// checked every Options.Poll.
func (s *Supervisor) Run(ctx context.Context, linkDead <-chan int) error {
	tick := time.NewTicker(s.opt.Poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case i, ok := <-linkDead:
			if !ok {
				linkDead = nil
				continue
			}
			if i != s.index {
				continue
			}
			s.log.Info("the kernel reports a dead connection", "device", s.Device())
		case <-tick.C:
		}
		dead, err := s.deadSockets()
		if err != nil {
			s.log.Warn("checking connections", "err", err)
			continue
		}
		if len(dead) == 0 {
			continue
		}
		if !s.configured() {
			s.log.Info("the device was disconnected; the supervisor stops", "device", s.Device())
			return nil
		}
		if err := s.reconnect(ctx, dead); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, errDetached) {
				s.log.Info("the device was disconnected; the supervisor stops", "device", s.Device())
				return nil
			}
			return err
		}
	}
}

// configured reports whether the device is still configured: false once
// it was detached (objbacker detach). NBD_CMD_STATUS counts a device as
// connected while anything holds its configuration, which outlives a
// disconnect for a while (seen on 6.1: RECONFIGURE then fails with "not
// configured"); the pid attribute in sysfs exists only while the device
// is set up. An error counts as configured.
func (s *Supervisor) configured() bool {
	st, err := s.kernel.Status(s.index)
	if err != nil {
		s.log.Warn("NBD_CMD_STATUS", "device", s.Device(), "err", err)
		return true
	}
	if !st[s.index] {
		return false
	}
	_, err = os.Stat(filepath.Join(s.opt.Sysfs, "block", fmt.Sprintf("nbd%d", s.index), "pid"))
	return !errors.Is(err, os.ErrNotExist)
}

// deadSockets returns the positions in s.socks of the connections that
// are gone.
func (s *Supervisor) deadSockets() ([]int, error) {
	states, err := s.opt.TCPState()
	if err != nil {
		return nil, err
	}
	var dead []int
	for i, id := range s.socks {
		if st, ok := states[id]; !ok || !alive(st) {
			dead = append(dead, i)
		}
	}
	return dead, nil
}

// reconnect replaces the dead connections, retrying with backoff until it
// succeeds, ctx ends, or the server must not be reconnected.
func (s *Supervisor) reconnect(ctx context.Context, dead []int) error {
	start := time.Now()
	s.log.Warn("connections lost; reconnecting", "device", s.Device(), "dead", len(dead), "of", len(s.socks), "server", s.opt.Addr)
	attempts := 0
	var lastErr string
	for {
		attempts++
		err := s.replace(ctx, dead)
		if err == nil {
			s.opt.Backoff.Reset()
			s.log.Info("reconnected", "device", s.Device(), "connections", len(dead), "attempts", attempts,
				"took", time.Since(start).Round(time.Millisecond), "incarnation", s.incarnation)
			return nil
		}
		if errors.Is(err, ErrRefused) || ctx.Err() != nil {
			return err
		}
		if !s.configured() {
			return errDetached
		}
		if msg := err.Error(); msg != lastErr {
			s.log.Info("reconnect attempt failed; retrying", "device", s.Device(), "err", err)
			lastErr = msg
		}
		t := time.NewTimer(s.opt.Backoff.Next())
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		// More may have died meanwhile.
		if d, err := s.deadSockets(); err == nil {
			if len(d) == 0 {
				return nil
			}
			dead = d
		}
	}
}

// replace dials len(dead) connections, judges the server, and hands them
// to the kernel in place of the dead ones.
func (s *Supervisor) replace(ctx context.Context, dead []int) error {
	conns, err := s.dialN(ctx, len(dead))
	if err != nil {
		return err
	}
	defer closeAll(conns)
	incarnation := s.incarnation
	for _, c := range conns {
		v, inc := Judge(incarnation, c.export.Description)
		switch v {
		case Unknown:
			if s.incarnation == "" {
				return fmt.Errorf("%w to %s: the server attached to %s did not say its incarnation, so whether it lost writes cannot be known; %s stays without connections and fails its I/O after the dead-connection timeout (%s); check the pool, then detach and attach again",
					ErrRefused, s.Device(), s.opt.Addr, s.Device(), s.opt.DeadConnTimeout)
			}
			return fmt.Errorf("%w to %s: the server at %s does not say its incarnation (description %q), so it cannot be told from one that lost writes; %s stays without connections and fails its I/O after the dead-connection timeout (%s)",
				ErrRefused, s.Device(), s.opt.Addr, c.export.Description, s.Device(), s.opt.DeadConnTimeout)
		case Lossy:
			return fmt.Errorf("%w to %s: LOSSY RESTART: the server at %s export %s is %s, which does not continue incarnation %s that %s was attached to: that daemon did not stop cleanly and writes it acknowledged may be lost; %s stays without connections and fails its I/O after the dead-connection timeout (%s), so ZFS suspends the pool instead of trusting it; recover the pool as the README says, then detach and attach again",
				ErrRefused, s.Device(), s.opt.Addr, s.opt.Export, inc, incarnation, s.Device(), s.Device(), s.opt.DeadConnTimeout)
		case Continues:
			s.log.Info("the server continues the attached incarnation (a clean restart)", "device", s.Device(),
				"from", incarnation, "to", inc.Token)
		}
		incarnation = inc.Token
		if c.export.Size != s.export.Size {
			return fmt.Errorf("%w to %s: export %s is now %d bytes, not %d", ErrRefused, s.Device(), s.opt.Export, c.export.Size, s.export.Size)
		}
		if c.export.Flags != s.export.Flags {
			s.log.Warn("the server's transmission flags changed; the device keeps the ones it was attached with",
				"device", s.Device(), "was", fmt.Sprintf("%#x", s.export.Flags), "now", fmt.Sprintf("%#x", c.export.Flags))
		}
	}
	fds, err := dupAll(conns)
	if err != nil {
		return err
	}
	defer closeFDs(fds)
	if err := s.kernel.Reconfigure(s.index, fds); err != nil {
		return err
	}
	s.setIncarnation(incarnation)
	for i, pos := range dead {
		s.socks[pos] = conns[i].id
	}
	return nil
}

type conn struct {
	net.Conn
	id     sockID
	export Export
}

// dialN dials n connections and does their handshakes.
func (s *Supervisor) dialN(ctx context.Context, n int) ([]*conn, error) {
	var conns []*conn
	for range n {
		c, err := s.dial(ctx)
		if err != nil {
			closeAll(conns)
			return nil, err
		}
		conns = append(conns, c)
	}
	return conns, nil
}

func (s *Supervisor) dial(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opt.HandshakeTimeout)
	defer cancel()
	nc, err := s.opt.Dial(ctx, s.opt.Addr)
	if err != nil {
		return nil, err
	}
	e, err := Handshake(ctx, nc, s.opt.Export, s.opt.HandshakeTimeout)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("%s export %s: %w", s.opt.Addr, s.opt.Export, err)
	}
	id, err := idOf(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &conn{Conn: nc, id: id, export: e}, nil
}

func closeAll(conns []*conn) {
	for _, c := range conns {
		c.Close()
	}
}

// dupAll returns a blocking descriptor of each connection's socket for the
// kernel, which reads and writes it in its own threads.
func dupAll(conns []*conn) ([]int, error) {
	var fds []int
	for _, c := range conns {
		sc, ok := c.Conn.(syscall.Conn)
		if !ok {
			closeFDs(fds)
			return nil, fmt.Errorf("%T has no descriptor", c.Conn)
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			closeFDs(fds)
			return nil, err
		}
		var fd int
		var derr error
		if err := raw.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
			derr = err
		}
		if derr != nil {
			closeFDs(fds)
			return nil, derr
		}
		fds = append(fds, fd)
		// The flag belongs to the shared open file: the Go connection is
		// not used again after this.
		if err := unix.SetNonblock(fd, false); err != nil {
			closeFDs(fds)
			return nil, err
		}
	}
	return fds, nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

func seconds(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64((d + time.Second - 1) / time.Second)
}
