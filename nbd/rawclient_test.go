package nbd

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pojntfx/go-nbd/pkg/protocol"
)

// rawClient speaks the protocol byte by byte, for what real clients never
// send. Every read and write has a deadline, so a stuck server fails the
// test instead of hanging it.
type rawClient struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return newRawClient(t, nc)
}

// newRawClient reads the server greeting and checks it.
func newRawClient(t testing.TB, nc net.Conn) *rawClient {
	t.Helper()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	c := &rawClient{t: t, nc: nc, r: bufio.NewReader(nc)}
	var hello protocol.NegotiationNewstyleHeader
	c.read(&hello)
	want := protocol.NegotiationNewstyleHeader{
		OldstyleMagic:  protocol.NEGOTIATION_MAGIC_OLDSTYLE,
		OptionMagic:    protocol.NEGOTIATION_MAGIC_OPTION,
		HandshakeFlags: protocol.NEGOTIATION_HANDSHAKE_FLAG_FIXED_NEWSTYLE | handshakeFlagNoZeroes,
	}
	if hello != want {
		t.Fatalf("greeting %+v, want %+v", hello, want)
	}
	return c
}

func (c *rawClient) write(parts ...any) {
	c.t.Helper()
	for _, p := range parts {
		if err := binary.Write(c.nc, binary.BigEndian, p); err != nil {
			c.t.Fatalf("write: %v", err)
		}
	}
}

func (c *rawClient) read(v any) {
	c.t.Helper()
	if err := binary.Read(c.r, binary.BigEndian, v); err != nil {
		c.t.Fatalf("read: %v", err)
	}
}

func (c *rawClient) option(id uint32, data []byte) {
	c.t.Helper()
	c.write(protocol.NegotiationOptionHeader{OptionMagic: protocol.NEGOTIATION_MAGIC_OPTION, ID: id, Length: uint32(len(data))}, data)
}

func (c *rawClient) optionReply() (protocol.NegotiationReplyHeader, []byte) {
	c.t.Helper()
	var h protocol.NegotiationReplyHeader
	c.read(&h)
	if h.ReplyMagic != protocol.NEGOTIATION_MAGIC_REPLY {
		c.t.Fatalf("option reply magic %#x", h.ReplyMagic)
	}
	data := make([]byte, h.Length)
	c.read(data)
	return h, data
}

// goData encodes NBD_OPT_INFO/GO data.
func goData(name string, requests ...uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(requests)))
	for _, r := range requests {
		b = binary.BigEndian.AppendUint16(b, r)
	}
	return b
}

// goTo sends GO for export with the given information requests and
// returns its size and transmission flags, failing on anything but success.
func (c *rawClient) goTo(export string, requests ...uint16) (size uint64, flags uint16) {
	c.t.Helper()
	c.option(protocol.NEGOTIATION_ID_OPTION_GO, goData(export, requests...))
	for {
		h, data := c.optionReply()
		switch h.Type {
		case protocol.NEGOTIATION_TYPE_REPLY_INFO:
			if binary.BigEndian.Uint16(data) == protocol.NEGOTIATION_TYPE_INFO_EXPORT {
				size, flags = binary.BigEndian.Uint64(data[2:]), binary.BigEndian.Uint16(data[10:])
			}
		case protocol.NEGOTIATION_TYPE_REPLY_ACK:
			return size, flags
		default:
			c.t.Fatalf("GO %q: reply type %#x: %s", export, h.Type, data)
		}
	}
}

// handshake completes a fixed newstyle handshake into export, agreeing to
// its block sizes as libnbd and qemu do.
func (c *rawClient) handshake(export string) (size uint64, flags uint16) {
	c.t.Helper()
	c.write(clientFlagFixedNewstyle | clientFlagNoZeroes)
	return c.goTo(export, protocol.NEGOTIATION_TYPE_INFO_BLOCKSIZE)
}

func (c *rawClient) request(typ, flags uint16, cookie, off uint64, length uint32, payload []byte) {
	c.t.Helper()
	c.write(protocol.TransmissionRequestHeader{
		RequestMagic: protocol.TRANSMISSION_MAGIC_REQUEST,
		CommandFlags: flags,
		Type:         typ,
		Handle:       cookie,
		Offset:       off,
		Length:       length,
	}, payload)
}

func (c *rawClient) reply() protocol.TransmissionReplyHeader {
	c.t.Helper()
	var h protocol.TransmissionReplyHeader
	c.read(&h)
	if h.ReplyMagic != protocol.TRANSMISSION_MAGIC_REPLY {
		c.t.Fatalf("reply magic %#x", h.ReplyMagic)
	}
	return h
}

// expectClosed asserts that the server closes the connection without
// sending anything more.
func (c *rawClient) expectClosed() {
	c.t.Helper()
	if n, err := io.Copy(io.Discard, c.r); err != nil || n != 0 {
		c.t.Fatalf("want the server to close the connection; got %d more bytes, err %v", n, err)
	}
}
