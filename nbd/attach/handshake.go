package attach

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/pojntfx/go-nbd/pkg/protocol"
)

// Transmission flags (NBD protocol) that matter to the kernel client.
const (
	FlagHasFlags     = protocol.NEGOTIATION_REPLY_FLAGS_HAS_FLAGS
	FlagReadOnly     = uint16(1 << 1)
	FlagSendFlush    = uint16(1 << 2)
	FlagSendFUA      = uint16(1 << 3)
	FlagSendTrim     = uint16(1 << 5)
	FlagCanMultiConn = protocol.NEGOTIATION_REPLY_FLAGS_CAN_MULTI_CONN
)

const (
	handshakeFlagNoZeroes = uint16(1 << 1)
	// optionReplyMax bounds one option reply's payload: an export's name
	// and description are at most 4 KiB each by the spec.
	optionReplyMax = 64 << 10
	// repErrBit marks an option reply that is an error.
	repErrBit = uint32(1 << 31)
)

// Export is what a server said about an export in its NBD_OPT_GO replies.
type Export struct {
	Name        string
	Size        uint64
	Flags       uint16 // transmission flags
	Description string
	// MinBlock, PreferredBlock and MaxBlock are zero when the server sent
	// no NBD_INFO_BLOCK_SIZE.
	MinBlock, PreferredBlock, MaxBlock uint32
}

// Handshake does the client's side of the fixed newstyle handshake on
// conn and selects export with NBD_OPT_GO, asking for its description and
// block sizes. On success the connection is in the transmission phase,
// with nothing read past the final reply: it can be handed to the kernel.
// ctx and timeout bound the handshake (deadlines on conn).
func Handshake(ctx context.Context, conn net.Conn, export string, timeout time.Duration) (Export, error) {
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return Export{}, err
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	e, err := handshake(conn, export)
	if !stop() && err != nil {
		return Export{}, ctx.Err()
	}
	if err != nil {
		return Export{}, err
	}
	return e, conn.SetDeadline(time.Time{})
}

func handshake(rw io.ReadWriter, export string) (Export, error) {
	var hello protocol.NegotiationNewstyleHeader
	if err := binary.Read(rw, binary.BigEndian, &hello); err != nil {
		return Export{}, fmt.Errorf("reading the greeting: %w", err)
	}
	if hello.OldstyleMagic != protocol.NEGOTIATION_MAGIC_OLDSTYLE || hello.OptionMagic != protocol.NEGOTIATION_MAGIC_OPTION {
		return Export{}, errors.New("not a newstyle NBD server")
	}
	if hello.HandshakeFlags&protocol.NEGOTIATION_HANDSHAKE_FLAG_FIXED_NEWSTYLE == 0 {
		return Export{}, errors.New("the server does not speak fixed newstyle")
	}
	clientFlags := uint32(protocol.NEGOTIATION_HANDSHAKE_FLAG_FIXED_NEWSTYLE)
	if hello.HandshakeFlags&handshakeFlagNoZeroes != 0 {
		clientFlags |= uint32(handshakeFlagNoZeroes)
	}
	payload := binary.BigEndian.AppendUint32(nil, uint32(len(export)))
	payload = append(payload, export...)
	payload = binary.BigEndian.AppendUint16(payload, 2)
	payload = binary.BigEndian.AppendUint16(payload, protocol.NEGOTIATION_TYPE_INFO_DESCRIPTION)
	payload = binary.BigEndian.AppendUint16(payload, protocol.NEGOTIATION_TYPE_INFO_BLOCKSIZE)
	msg := binary.BigEndian.AppendUint32(nil, clientFlags)
	msg = binary.BigEndian.AppendUint64(msg, protocol.NEGOTIATION_MAGIC_OPTION)
	msg = binary.BigEndian.AppendUint32(msg, protocol.NEGOTIATION_ID_OPTION_GO)
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(payload)))
	msg = append(msg, payload...)
	if _, err := rw.Write(msg); err != nil {
		return Export{}, fmt.Errorf("sending NBD_OPT_GO: %w", err)
	}

	e := Export{Name: export}
	gotExport := false
	for {
		var h protocol.NegotiationReplyHeader
		if err := binary.Read(rw, binary.BigEndian, &h); err != nil {
			return Export{}, fmt.Errorf("reading the reply to NBD_OPT_GO: %w", err)
		}
		if h.ReplyMagic != protocol.NEGOTIATION_MAGIC_REPLY || h.ID != protocol.NEGOTIATION_ID_OPTION_GO {
			return Export{}, fmt.Errorf("bad option reply (magic %#x, option %d)", h.ReplyMagic, h.ID)
		}
		if h.Length > optionReplyMax {
			return Export{}, fmt.Errorf("option reply of %d bytes", h.Length)
		}
		data := make([]byte, h.Length)
		if _, err := io.ReadFull(rw, data); err != nil {
			return Export{}, fmt.Errorf("reading the reply to NBD_OPT_GO: %w", err)
		}
		switch {
		case h.Type == protocol.NEGOTIATION_TYPE_REPLY_ACK:
			if !gotExport {
				return Export{}, errors.New("the server acknowledged NBD_OPT_GO without NBD_INFO_EXPORT")
			}
			return e, nil
		case h.Type == protocol.NEGOTIATION_TYPE_REPLY_INFO:
			if len(data) < 2 {
				return Export{}, errors.New("short NBD_REP_INFO")
			}
			info, body := binary.BigEndian.Uint16(data), data[2:]
			switch info {
			case protocol.NEGOTIATION_TYPE_INFO_EXPORT:
				if len(body) != 10 {
					return Export{}, errors.New("bad NBD_INFO_EXPORT")
				}
				e.Size, e.Flags, gotExport = binary.BigEndian.Uint64(body), binary.BigEndian.Uint16(body[8:]), true
			case protocol.NEGOTIATION_TYPE_INFO_DESCRIPTION:
				e.Description = string(body)
			case protocol.NEGOTIATION_TYPE_INFO_BLOCKSIZE:
				if len(body) != 12 {
					return Export{}, errors.New("bad NBD_INFO_BLOCK_SIZE")
				}
				e.MinBlock = binary.BigEndian.Uint32(body)
				e.PreferredBlock = binary.BigEndian.Uint32(body[4:])
				e.MaxBlock = binary.BigEndian.Uint32(body[8:])
			}
		case h.Type&repErrBit != 0:
			msg := string(data)
			if msg == "" {
				msg = fmt.Sprintf("error %#x", h.Type)
			}
			return Export{}, fmt.Errorf("the server refused export %q: %s", export, msg)
		default:
			return Export{}, fmt.Errorf("unexpected option reply type %#x", h.Type)
		}
	}
}

// BlockSize picks the device's logical block size for e: want if it is
// set, else the server's preferred size, within what the kernel accepts
// (a power of two from 512 to 4096) and the server's minimum and maximum.
func BlockSize(e Export, want uint32) (uint32, error) {
	bs := want
	if bs == 0 {
		bs = e.PreferredBlock
		if bs == 0 {
			bs = 4096
		}
		bs = max(512, min(4096, bs))
		if e.MinBlock > bs {
			bs = e.MinBlock
		}
	}
	switch {
	case bs < 512 || bs > 4096 || bs&(bs-1) != 0:
		return 0, fmt.Errorf("block size %d: the kernel takes a power of two from 512 to 4096", bs)
	case e.MinBlock != 0 && bs < e.MinBlock, e.MaxBlock != 0 && bs > e.MaxBlock:
		return 0, fmt.Errorf("block size %d is outside the server's %d-%d", bs, e.MinBlock, e.MaxBlock)
	}
	return bs, nil
}
