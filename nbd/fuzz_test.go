package nbd

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/pojntfx/go-nbd/pkg/protocol"
)

// The fuzz targets feed arbitrary client bytes to ServeConn over net.Pipe
// and require that it returns promptly once the client hangs up: no panic,
// no hang, whatever was sent.

func FuzzTransmission(f *testing.F) {
	for _, seed := range [][]byte{
		fuzzRequest(cmdRead, 0, 0, 4096),
		append(fuzzRequest(cmdWrite, cmdFlagFUA, 512, 512), make([]byte, 512)...),
		append(fuzzRequest(cmdWrite, 0, 0, 1<<20), 1, 2, 3),
		fuzzRequest(cmdWrite, 0, 0, 0xffffffff),
		fuzzRequest(cmdFlush, 0, 0, 0),
		fuzzRequest(cmdTrim, 0, 1<<19, 1<<20),
		fuzzRequest(cmdWriteZeroes, cmdFlagNoHole|cmdFlagFUA, 1<<64-512, 1024),
		fuzzRequest(99, 0xffff, 0, 1<<30),
		append(fuzzRequest(cmdRead, 0, 0, 512), fuzzRequest(protocol.TRANSMISSION_TYPE_REQUEST_DISC, 0, 0, 0)...),
		{0x25, 0x60, 0x95, 0x13, 0},
		{0xde, 0xad},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		fuzzServe(t, stream, func(c *rawClient) { c.handshake("disk") })
	})
}

// FuzzHandshake sends the bytes right after the server's greeting.
func FuzzHandshake(f *testing.F) {
	flags := binary.BigEndian.AppendUint32(nil, clientFlagFixedNewstyle|clientFlagNoZeroes)
	for _, seed := range [][]byte{
		append(flags, fuzzOption(optGo, goData("disk", 0, 1, 2, 3))...),
		append(flags, fuzzOption(protocol.NEGOTIATION_ID_OPTION_INFO, goData("", 3))...),
		append(flags, fuzzOption(protocol.NEGOTIATION_ID_OPTION_LIST, nil)...),
		append(flags, fuzzOption(optExportName, []byte("disk"))...),
		append(flags, fuzzOption(optGo, []byte{0xff, 0xff, 0xff, 0xff, 0, 0})...),
		append(flags, binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(nil, 0), protocol.NEGOTIATION_MAGIC_OPTION)...),
		{0, 0, 0, 3},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		fuzzServe(t, stream, func(*rawClient) {})
	})
}

func fuzzServe(t *testing.T, stream []byte, prepare func(*rawClient)) {
	s := &Server{
		Exports:     []*Export{{Name: "disk", Backend: newMemBackend(1 << 20), MaxBlockSize: 64 << 10}},
		Log:         slog.New(slog.DiscardHandler),
		MaxInflight: 4,
	}
	client, server := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.ServeConn(ctx, server)
	}()

	c := newRawClient(t, client)
	prepare(c)
	// net.Pipe is unbuffered: drain replies while writing, or both block.
	go io.Copy(io.Discard, c.r)
	client.SetWriteDeadline(time.Now().Add(2 * time.Second))
	client.Write(stream)
	client.Close()

	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn still running 5s after the client hung up")
	}
}

func fuzzRequest(typ, flags uint16, off uint64, length uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, protocol.TRANSMISSION_MAGIC_REQUEST)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, 0x1234)
	b = binary.BigEndian.AppendUint64(b, off)
	return binary.BigEndian.AppendUint32(b, length)
}

func fuzzOption(id uint32, data []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, protocol.NEGOTIATION_MAGIC_OPTION)
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}
