package kernel

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"syscall"
)

// helloID is the id of the daemon's one HELLO; any value would do.
const helloID = 1

// handshake registers the exports and returns the kernel's limits.
func handshake(w io.Writer, r *bufio.Reader, exports []*export) (HelloReply, error) {
	infos := make([]ExportInfo, len(exports))
	for i, e := range exports {
		infos[i] = e.info()
	}
	payload := AppendHello(nil, infos)
	msg := AppendHeader(nil, Header{Magic: RequestMagic, Version: Version, Op: OpHello, ID: helloID, Length: uint32(len(payload))})
	if _, err := w.Write(append(msg, payload...)); err != nil {
		return HelloReply{}, fmt.Errorf("sending HELLO: %w", err)
	}

	var hb [HeaderLen]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return HelloReply{}, fmt.Errorf("reading the HELLO reply: %w", noEOF(err))
	}
	h := DecodeHeader(hb[:])
	if h.Magic != ReplyMagic || h.Op != OpHello || h.ID != helloID {
		return HelloReply{}, fmt.Errorf("protocol error: expected the HELLO reply, got magic %#x op %v id %d", h.Magic, h.Op, h.ID)
	}
	switch h.Status {
	case 0:
	case syscall.EPROTONOSUPPORT:
		return HelloReply{}, fmt.Errorf("the kernel module speaks protocol version %d, this daemon version %d: %w", h.Version, Version, h.Status)
	case syscall.EBUSY:
		return HelloReply{}, fmt.Errorf("an export name is already registered by another daemon: %w", h.Status)
	default:
		return HelloReply{}, fmt.Errorf("HELLO refused: %w", h.Status)
	}
	if h.Version != Version || h.Length != HelloReplyLen {
		return HelloReply{}, fmt.Errorf("protocol error: HELLO reply with version %d and %d payload bytes", h.Version, h.Length)
	}
	var pb [HelloReplyLen]byte
	if _, err := io.ReadFull(r, pb[:]); err != nil {
		return HelloReply{}, fmt.Errorf("reading the HELLO reply: %w", noEOF(err))
	}
	reply, err := ParseHelloReply(pb[:])
	if err != nil {
		return HelloReply{}, fmt.Errorf("protocol error: %w", err)
	}
	if reply.MaxIO < SectorSize || reply.MaxIO > MaxIO || reply.MaxIO%SectorSize != 0 {
		return HelloReply{}, fmt.Errorf("protocol error: the kernel's largest I/O is %d bytes", reply.MaxIO)
	}
	return reply, nil
}

// noEOF names a clean end of stream for what it is here.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return errChannelEnded
	}
	return err
}
