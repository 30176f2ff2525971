package attach

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/objbacker/objbacker/nbd"
	"github.com/pojntfx/go-nbd/pkg/protocol"
)

// TestHandshake does the GO handshake against our own server and then
// speaks the transmission phase on the same socket, as the kernel will.
func TestHandshake(t *testing.T) {
	const desc = "objbacker test [incarnation=ab12 continues=none]"
	d := startDaemon(t, desc)
	c, err := net.Dial("tcp", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	e, err := Handshake(context.Background(), c, "disk", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if e.Size != 16<<20 || e.Description != desc || e.Flags&FlagHasFlags == 0 || e.Flags&FlagCanMultiConn == 0 || e.Flags&FlagSendFlush == 0 {
		t.Fatalf("export %+v", e)
	}
	if e.MinBlock != nbd.DefaultMinBlockSize || e.PreferredBlock != nbd.DefaultPreferredBlockSize || e.MaxBlock != nbd.DefaultMaxBlockSize {
		t.Errorf("block sizes %d/%d/%d", e.MinBlock, e.PreferredBlock, e.MaxBlock)
	}
	if bs, err := BlockSize(e, 0); err != nil || bs != 4096 {
		t.Errorf("BlockSize = %d, %v; want 4096", bs, err)
	}

	// The socket is in the transmission phase: a FLUSH gets its reply.
	c.SetDeadline(time.Now().Add(5 * time.Second))
	req := make([]byte, 28)
	be := func(b []byte, v uint64, n int) {
		for i := n - 1; i >= 0; i-- {
			b[i] = byte(v)
			v >>= 8
		}
	}
	be(req[0:], uint64(protocol.TRANSMISSION_MAGIC_REQUEST), 4)
	be(req[6:], 3, 2) // NBD_CMD_FLUSH
	be(req[8:], 77, 8)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 16)
	if _, err := c.Read(reply); err != nil {
		t.Fatal(err)
	}
	if reply[15] != 77 || reply[4]|reply[5]|reply[6]|reply[7] != 0 {
		t.Fatalf("FLUSH reply % x", reply)
	}
}

func TestHandshakeUnknownExport(t *testing.T) {
	d := startDaemon(t, "x")
	c, err := net.Dial("tcp", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := Handshake(context.Background(), c, "nope", 5*time.Second); err == nil {
		t.Fatal("GO for an unknown export succeeded")
	} else {
		t.Log(err)
	}
}

func TestBlockSize(t *testing.T) {
	for _, tc := range []struct {
		e    Export
		want uint32
		bs   uint32
		ok   bool
	}{
		{Export{}, 0, 4096, true},
		{Export{MinBlock: 1, PreferredBlock: 512, MaxBlock: 1 << 25}, 0, 512, true},
		{Export{MinBlock: 1, PreferredBlock: 1 << 20, MaxBlock: 1 << 25}, 0, 4096, true},
		{Export{MinBlock: 512, PreferredBlock: 4096, MaxBlock: 1 << 25}, 1024, 1024, true},
		{Export{MinBlock: 4096, PreferredBlock: 4096, MaxBlock: 1 << 25}, 512, 0, false},
		{Export{}, 8192, 0, false},
		{Export{}, 1000, 0, false},
	} {
		bs, err := BlockSize(tc.e, tc.want)
		if (err == nil) != tc.ok || bs != tc.bs {
			t.Errorf("BlockSize(%+v, %d) = %d, %v; want %d", tc.e, tc.want, bs, err, tc.bs)
		}
	}
}
