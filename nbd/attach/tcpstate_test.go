package attach

import (
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestParseProcTCP(t *testing.T) {
	// Little-endian words, as on x86 and arm64.
	const table = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0F02000A:C350 0202000A:2A45 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 20 4 30 10 -1
   1: 0100007F:2A45 0100007F:9C40 08 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
`
	out := map[sockID]uint8{}
	if err := parseProcTCP(strings.NewReader(table), out); err != nil {
		t.Fatal(err)
	}
	id := sockID{netip.MustParseAddrPort("10.0.2.15:50000"), netip.MustParseAddrPort("10.0.2.2:10821")}
	if st, ok := out[id]; !ok || st != tcpEstablished {
		t.Errorf("%v: state %#x, %v; table %v", id, st, ok, out)
	}
	id = sockID{netip.MustParseAddrPort("127.0.0.1:10821"), netip.MustParseAddrPort("127.0.0.1:40000")}
	if st := out[id]; st != tcpCloseWait || !alive(st) {
		t.Errorf("%v: state %#x", id, st)
	}
}

// TestProcTCPFindsConnection finds a live loopback connection, and finds
// it gone once both ends closed.
func TestProcTCPFindsConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	id, err := idOf(c)
	if err != nil {
		t.Fatal(err)
	}
	states, err := procTCP()
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := states[id]; !ok || st != tcpEstablished {
		t.Fatalf("%v: state %#x, listed %v", id, st, ok)
	}
	s.Close()
	c.Close()
	states, err = procTCP()
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := states[id]; ok && alive(st) {
		t.Fatalf("%v still alive after both ends closed: state %#x", id, st)
	}
}
