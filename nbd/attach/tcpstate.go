package attach

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// sockID names a TCP connection by its two ends, as /proc/net/tcp lists
// it. The supervisor keeps no descriptor of the sockets it handed to the
// kernel; it finds them here.
type sockID struct {
	local, remote netip.AddrPort
}

func (s sockID) String() string { return s.local.String() + "->" + s.remote.String() }

func idOf(c net.Conn) (sockID, error) {
	l, lok := c.LocalAddr().(*net.TCPAddr)
	r, rok := c.RemoteAddr().(*net.TCPAddr)
	if !lok || !rok {
		return sockID{}, fmt.Errorf("not a TCP connection: %v", c.LocalAddr())
	}
	return sockID{local: unmap(l.AddrPort()), remote: unmap(r.AddrPort())}, nil
}

func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// TCP states in /proc/net/tcp (include/net/tcp_states.h).
const (
	tcpEstablished = 0x01
	tcpCloseWait   = 0x08
)

// alive reports whether a state is one of a connection the kernel still
// uses: established, or closed by the server but not yet noticed (the
// kernel's receiver then marks it dead and shuts it down, which moves it
// on). A connection the kernel marked dead was shut down in both
// directions, and one the kernel let go is not listed at all.
func alive(state uint8) bool { return state == tcpEstablished || state == tcpCloseWait }

// procTCP reads the TCP connections of this network namespace and their
// states from /proc/net/tcp and /proc/net/tcp6.
func procTCP() (map[sockID]uint8, error) {
	out := map[sockID]uint8{}
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(name)
		if os.IsNotExist(err) && name == "/proc/net/tcp6" {
			continue
		}
		if err != nil {
			return nil, err
		}
		err = parseProcTCP(f, out)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return out, nil
}

// parseProcTCP reads lines such as
//
//	0: 0100007F:A3C2 0100007F:2A45 01 ...
func parseProcTCP(r io.Reader, out map[sockID]uint8) error {
	sc := bufio.NewScanner(r)
	first := true
	for sc.Scan() {
		if first {
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		l, err := parseProcAddr(f[1])
		if err != nil {
			return err
		}
		rem, err := parseProcAddr(f[2])
		if err != nil {
			return err
		}
		st, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil {
			return err
		}
		out[sockID{local: l, remote: rem}] = uint8(st)
	}
	return sc.Err()
}

// parseProcAddr decodes "0100007F:A3C2": the address as 32-bit words in
// the host's byte order, the port in hex.
func parseProcAddr(s string) (netip.AddrPort, error) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(h)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", s)
	}
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.BigEndian.PutUint32(b[i:], binary.NativeEndian.Uint32(raw[i:]))
	}
	a, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), nil
}
