package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/pojntfx/go-nbd/pkg/protocol"
)

// The client flags of a fixed newstyle handshake (the NBD protocol's
// NBD_FLAG_C_FIXED_NEWSTYLE and NBD_FLAG_C_NO_ZEROES).
const (
	nbdClientFixedNewstyle = 1 << 0
	nbdClientNoZeroes      = 1 << 1
)

// nbdRead connects to an NBD server, enters export with NBD_OPT_GO, reads
// length bytes at off with one NBD_CMD_READ (simple replies: no structured
// replies are negotiated), and disconnects. It is the start-up section's
// probe: the smallest client that proves a byte was served, with no
// process to start per attempt. Every step has a deadline.
func nbdRead(addr, export string, off uint64, length uint32, deadline time.Duration) ([]byte, error) {
	nc, err := net.DialTimeout("tcp", addr, deadline)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	if err := nc.SetDeadline(time.Now().Add(deadline)); err != nil {
		return nil, err
	}
	r := bufio.NewReader(nc)
	var hello protocol.NegotiationNewstyleHeader
	if err := binary.Read(r, binary.BigEndian, &hello); err != nil {
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if hello.OldstyleMagic != protocol.NEGOTIATION_MAGIC_OLDSTYLE || hello.OptionMagic != protocol.NEGOTIATION_MAGIC_OPTION {
		return nil, fmt.Errorf("greeting: not a newstyle NBD server (%+v)", hello)
	}
	if err := binary.Write(nc, binary.BigEndian, uint32(nbdClientFixedNewstyle|nbdClientNoZeroes)); err != nil {
		return nil, err
	}
	data := binary.BigEndian.AppendUint32(nil, uint32(len(export)))
	data = append(data, export...)
	data = binary.BigEndian.AppendUint16(data, 0) // no information requests
	opt := protocol.NegotiationOptionHeader{OptionMagic: protocol.NEGOTIATION_MAGIC_OPTION,
		ID: protocol.NEGOTIATION_ID_OPTION_GO, Length: uint32(len(data))}
	if err := binary.Write(nc, binary.BigEndian, opt); err != nil {
		return nil, err
	}
	if _, err := nc.Write(data); err != nil {
		return nil, err
	}
	for acked := false; !acked; {
		var h protocol.NegotiationReplyHeader
		if err := binary.Read(r, binary.BigEndian, &h); err != nil {
			return nil, fmt.Errorf("GO reply: %w", err)
		}
		body := make([]byte, h.Length)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, fmt.Errorf("GO reply: %w", err)
		}
		switch h.Type {
		case protocol.NEGOTIATION_TYPE_REPLY_ACK:
			acked = true
		case protocol.NEGOTIATION_TYPE_REPLY_INFO:
		default:
			return nil, fmt.Errorf("GO %q refused: reply type %#x: %s", export, h.Type, body)
		}
	}
	req := protocol.TransmissionRequestHeader{RequestMagic: protocol.TRANSMISSION_MAGIC_REQUEST,
		Type: protocol.TRANSMISSION_TYPE_REQUEST_READ, Handle: 1, Offset: off, Length: length}
	if err := binary.Write(nc, binary.BigEndian, req); err != nil {
		return nil, err
	}
	var rep protocol.TransmissionReplyHeader
	if err := binary.Read(r, binary.BigEndian, &rep); err != nil {
		return nil, fmt.Errorf("read reply: %w", err)
	}
	if rep.ReplyMagic != protocol.TRANSMISSION_MAGIC_REPLY || rep.Handle != 1 {
		return nil, fmt.Errorf("read reply: magic %#x handle %d", rep.ReplyMagic, rep.Handle)
	}
	if rep.Error != 0 {
		return nil, fmt.Errorf("read at %d: NBD error %d", off, rep.Error)
	}
	buf := make([]byte, length)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("read payload: %w", err)
	}
	// A polite goodbye; the answer does not matter.
	_ = binary.Write(nc, binary.BigEndian, protocol.TransmissionRequestHeader{
		RequestMagic: protocol.TRANSMISSION_MAGIC_REQUEST, Type: protocol.TRANSMISSION_TYPE_REQUEST_DISC, Handle: 2})
	return buf, nil
}
