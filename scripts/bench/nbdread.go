package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/objbacker/objbacker/nbd/attach"
	"github.com/pojntfx/go-nbd/pkg/protocol"
)

// nbdRead connects to an NBD server, enters export with attach.Handshake
// (NBD_OPT_GO, the client attach hands to the kernel), reads length bytes
// at off with one NBD_CMD_READ (simple replies: no structured replies are
// negotiated), and disconnects. It is the start-up section's probe: the
// smallest client that proves a byte was served, with no process to start
// per attempt. Every step has a deadline.
func nbdRead(addr, export string, off uint64, length uint32, deadline time.Duration) ([]byte, error) {
	nc, err := net.DialTimeout("tcp", addr, deadline)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	if _, err := attach.Handshake(context.Background(), nc, export, deadline); err != nil {
		return nil, err
	}
	if err := nc.SetDeadline(time.Now().Add(deadline)); err != nil {
		return nil, err
	}
	r := bufio.NewReader(nc)
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
