package nbd

import (
	"encoding/binary"

	"github.com/pojntfx/go-nbd/pkg/protocol"

	"github.com/objbacker/objbacker/internal/inflight"
)

// Protocol values that go-nbd's protocol package does not define, named as
// in the NBD spec (doc/proto.md). Only values this server uses are listed.
const (
	handshakeFlagNoZeroes = uint16(1 << 1)

	clientFlagFixedNewstyle = uint32(protocol.NEGOTIATION_HANDSHAKE_FLAG_FIXED_NEWSTYLE)
	clientFlagNoZeroes      = uint32(handshakeFlagNoZeroes)

	optExportName      = uint32(1)
	optStructuredReply = uint32(8)
	optListMetaContext = uint32(9)
	optSetMetaContext  = uint32(10)

	repMetaContext = uint32(4)
	repErrInvalid  = uint32(3 | 1<<31)
	repErrTooBig   = uint32(9 | 1<<31)

	flagReadOnly        = uint16(1 << 1)
	flagSendFlush       = uint16(1 << 2)
	flagSendFUA         = uint16(1 << 3)
	flagSendTrim        = uint16(1 << 5)
	flagSendWriteZeroes = uint16(1 << 6)
	flagSendCache       = uint16(1 << 10)
	flagSendFastZero    = uint16(1 << 11)

	cmdFlush       = uint16(3)
	cmdTrim        = uint16(4)
	cmdCache       = uint16(5)
	cmdWriteZeroes = uint16(6)
	cmdBlockStatus = uint16(7)

	cmdFlagFUA      = uint16(1 << 0)
	cmdFlagNoHole   = uint16(1 << 1)
	cmdFlagReqOne   = uint16(1 << 3)
	cmdFlagFastZero = uint16(1 << 4)

	structuredReplyMagic = uint32(0x668e33ef)
	replyFlagDone        = uint16(1 << 0)
	replyTypeNone        = uint16(0)
	replyTypeOffsetData  = uint16(1)
	replyTypeOffsetHole  = uint16(2)
	replyTypeBlockStatus = uint16(5)
	replyTypeError       = uint16(1<<15 + 1)

	// base:allocation, the one metadata context served, and its flags.
	metaBaseAllocation   = "base:allocation"
	metaBaseAllocationID = uint32(1)
	stateHole            = uint32(1 << 0)
	stateZero            = uint32(1 << 1)

	errEIO       = uint32(5)
	errENOSPC    = uint32(28)
	errEOVERFLOW = uint32(75)
	errENOTSUP   = uint32(95)
)

// Wire sizes of the fixed-length transmission messages.
const (
	requestHeaderLen = 28
	replyHeaderLen   = 16
	// chunkHeaderLen is a structured reply chunk's header, and
	// dataChunkHeaderLen that of an NBD_REPLY_TYPE_OFFSET_DATA chunk with
	// its offset: what payload buffers keep in front of their data.
	chunkHeaderLen     = 20
	dataChunkHeaderLen = chunkHeaderLen + 8
	// exportNameZeroes pads the NBD_OPT_EXPORT_NAME reply unless the
	// client negotiated NO_ZEROES.
	exportNameZeroes = 124
)

// The transmission headers are coded by hand rather than with
// binary.Read/Write on go-nbd's structs: reflection allocates on every
// request, and these two run once per request.

func decodeRequest(b *[requestHeaderLen]byte) protocol.TransmissionRequestHeader {
	return protocol.TransmissionRequestHeader{
		RequestMagic: binary.BigEndian.Uint32(b[0:]),
		CommandFlags: binary.BigEndian.Uint16(b[4:]),
		Type:         binary.BigEndian.Uint16(b[6:]),
		Handle:       binary.BigEndian.Uint64(b[8:]),
		Offset:       binary.BigEndian.Uint64(b[16:]),
		Length:       binary.BigEndian.Uint32(b[24:]),
	}
}

func encodeReply(b []byte, h protocol.TransmissionReplyHeader) {
	binary.BigEndian.PutUint32(b[0:], h.ReplyMagic)
	binary.BigEndian.PutUint32(b[4:], h.Error)
	binary.BigEndian.PutUint64(b[8:], h.Handle)
}

// encodeChunk writes a structured reply chunk header into b.
func encodeChunk(b []byte, flags, typ uint16, cookie uint64, length uint32) {
	binary.BigEndian.PutUint32(b[0:], structuredReplyMagic)
	binary.BigEndian.PutUint16(b[4:], flags)
	binary.BigEndian.PutUint16(b[6:], typ)
	binary.BigEndian.PutUint64(b[8:], cookie)
	binary.BigEndian.PutUint32(b[16:], length)
}

// payloadHeadroom is the room payload buffers keep in front of the data:
// enough for a simple reply header or an OFFSET_DATA chunk header.
const payloadHeadroom = dataChunkHeaderLen

// payloads holds READ and WRITE payload buffers, with room for a reply
// header in front of each.
var payloads = inflight.NewBuffers(payloadHeadroom, MaxPayload, DefaultMaxBuffered)
