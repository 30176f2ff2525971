package kernel

import (
	"encoding/binary"
	"fmt"
	"syscall"

	"github.com/objbacker/objbacker/internal/inflight"
)

// Protocol constants, as in zfs_objbacker.h (ZOB_*).
const (
	// DeviceName is the misc device's name: /dev/zfs_objbacker.
	DeviceName = "zfs_objbacker"

	RequestMagic = 0x51424f5a // "ZOBQ" on the wire
	ReplyMagic   = 0x52424f5a // "ZOBR"
	Version      = 1

	// SectorSize is the unit of every READ, WRITE and TRIM range.
	SectorSize = 512
	// MaxIO bounds READ and WRITE lengths: ZFS's largest block.
	MaxIO      = 16 << 20
	NameMax    = 64
	MaxExports = 1024

	// FlagFUA asks that a WRITE be durable before its reply.
	FlagFUA = 1 << 0

	// ExportReadOnly and ExportTrim are ExportInfo.Flags.
	ExportReadOnly = 1 << 0
	ExportTrim     = 1 << 1
)

// Op is a message's operation (ZOB_OP_*).
type Op uint16

const (
	OpRead  Op = 1
	OpWrite Op = 2
	OpTrim  Op = 3
	OpFlush Op = 4
	OpHello Op = 5
	OpBye   Op = 6
)

func (o Op) String() string {
	switch o {
	case OpRead:
		return "READ"
	case OpWrite:
		return "WRITE"
	case OpTrim:
		return "TRIM"
	case OpFlush:
		return "FLUSH"
	case OpHello:
		return "HELLO"
	case OpBye:
		return "BYE"
	}
	return fmt.Sprintf("op(%d)", uint16(o))
}

// HeaderLen is sizeof(zob_hdr_t).
const HeaderLen = 40

// Header is zob_hdr_t. Status is 0 or a Linux errno (ZOB_E*).
type Header struct {
	Magic   uint32
	Version uint16
	Op      Op
	ID      uint64
	Offset  uint64
	Length  uint32
	Flags   uint32
	Export  uint32
	Status  syscall.Errno
}

// Encode writes h into b[:HeaderLen].
func (h *Header) Encode(b []byte) {
	le := binary.LittleEndian
	_ = b[HeaderLen-1]
	le.PutUint32(b[0:], h.Magic)
	le.PutUint16(b[4:], h.Version)
	le.PutUint16(b[6:], uint16(h.Op))
	le.PutUint64(b[8:], h.ID)
	le.PutUint64(b[16:], h.Offset)
	le.PutUint32(b[24:], h.Length)
	le.PutUint32(b[28:], h.Flags)
	le.PutUint32(b[32:], h.Export)
	le.PutUint32(b[36:], uint32(h.Status))
}

// AppendHeader appends h's encoding to b.
func AppendHeader(b []byte, h Header) []byte {
	b = append(b, make([]byte, HeaderLen)...)
	h.Encode(b[len(b)-HeaderLen:])
	return b
}

// DecodeHeader reads a header from b[:HeaderLen].
func DecodeHeader(b []byte) Header {
	le := binary.LittleEndian
	_ = b[HeaderLen-1]
	return Header{
		Magic:   le.Uint32(b[0:]),
		Version: le.Uint16(b[4:]),
		Op:      Op(le.Uint16(b[6:])),
		ID:      le.Uint64(b[8:]),
		Offset:  le.Uint64(b[16:]),
		Length:  le.Uint32(b[24:]),
		Flags:   le.Uint32(b[28:]),
		Export:  le.Uint32(b[32:]),
		Status:  syscall.Errno(le.Uint32(b[36:])),
	}
}

// HasPayload reports whether zh_length bytes follow this header on the
// wire: the header file's list, for both directions.
func (h *Header) HasPayload() bool {
	switch h.Magic {
	case RequestMagic:
		return h.Op == OpWrite || h.Op == OpHello
	case ReplyMagic:
		return h.Status == 0 && (h.Op == OpRead || h.Op == OpHello)
	}
	return false
}

// payloads holds READ and WRITE payload buffers, with room for a header in
// front of each.
var payloads = inflight.NewBuffers(HeaderLen, MaxIO, DefaultMaxBuffered)
