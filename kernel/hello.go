package kernel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Sizes of the HELLO payload structs.
const (
	helloLen      = 8  // zob_hello_t
	ExportInfoLen = 96 // zob_export_t
	HelloReplyLen = 16 // zob_hello_reply_t
)

// ExportInfo is zob_export_t: one export as the daemon registers it.
type ExportInfo struct {
	Size       uint64
	ID         uint32
	Flags      uint32
	SectorSize uint32
	BlockSize  uint32
	Name       string
}

// HelloReply is zob_hello_reply_t, the kernel's answer to a HELLO.
type HelloReply struct {
	MaxIO       uint32
	MaxInflight uint32
	TimeoutMS   uint32
}

var errBadHello = errors.New("malformed HELLO payload")

// AppendHello appends a HELLO request payload (zob_hello_t and the
// exports) to b.
func AppendHello(b []byte, exports []ExportInfo) []byte {
	le := binary.LittleEndian
	b = le.AppendUint32(b, uint32(len(exports)))
	b = le.AppendUint32(b, 0)
	for _, e := range exports {
		b = e.append(b)
	}
	return b
}

func (e ExportInfo) append(b []byte) []byte {
	le := binary.LittleEndian
	b = le.AppendUint64(b, e.Size)
	b = le.AppendUint32(b, e.ID)
	b = le.AppendUint32(b, e.Flags)
	b = le.AppendUint32(b, e.SectorSize)
	b = le.AppendUint32(b, e.BlockSize)
	b = le.AppendUint32(b, uint32(len(e.Name)))
	b = le.AppendUint32(b, 0)
	var name [NameMax]byte
	copy(name[:], e.Name)
	return append(b, name[:]...)
}

// ParseHello decodes a HELLO request payload with the kernel's checks:
// sizes agree, names are 1 to NameMax bytes without NUL, padding is zero.
func ParseHello(p []byte) ([]ExportInfo, error) {
	le := binary.LittleEndian
	if len(p) < helloLen || le.Uint32(p[4:]) != 0 {
		return nil, errBadHello
	}
	n := le.Uint32(p)
	if n == 0 || n > MaxExports || uint64(len(p)) != helloLen+uint64(n)*ExportInfoLen {
		return nil, fmt.Errorf("%w: %d exports in %d bytes", errBadHello, n, len(p))
	}
	exports := make([]ExportInfo, n)
	for i := range exports {
		b := p[helloLen+i*ExportInfoLen:][:ExportInfoLen]
		nameLen := le.Uint32(b[24:])
		name := b[32:]
		if nameLen == 0 || nameLen > NameMax || le.Uint32(b[28:]) != 0 ||
			bytes.IndexByte(name[:nameLen], 0) >= 0 || !allZero(name[nameLen:]) {
			return nil, fmt.Errorf("%w: export %d", errBadHello, i)
		}
		exports[i] = ExportInfo{
			Size:       le.Uint64(b[0:]),
			ID:         le.Uint32(b[8:]),
			Flags:      le.Uint32(b[12:]),
			SectorSize: le.Uint32(b[16:]),
			BlockSize:  le.Uint32(b[20:]),
			Name:       string(name[:nameLen]),
		}
	}
	return exports, nil
}

// AppendHelloReply appends a HELLO reply payload to b.
func AppendHelloReply(b []byte, r HelloReply) []byte {
	le := binary.LittleEndian
	b = le.AppendUint32(b, r.MaxIO)
	b = le.AppendUint32(b, r.MaxInflight)
	b = le.AppendUint32(b, r.TimeoutMS)
	return le.AppendUint32(b, 0)
}

// ParseHelloReply decodes a HELLO reply payload.
func ParseHelloReply(p []byte) (HelloReply, error) {
	le := binary.LittleEndian
	if len(p) != HelloReplyLen || le.Uint32(p[12:]) != 0 {
		return HelloReply{}, errors.New("malformed HELLO reply payload")
	}
	return HelloReply{MaxIO: le.Uint32(p[0:]), MaxInflight: le.Uint32(p[4:]), TimeoutMS: le.Uint32(p[8:])}, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
