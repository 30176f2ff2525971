package nbd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/pojntfx/go-nbd/pkg/protocol"
)

// These tests send with a raw client what libnbd and qemu never send.

const (
	cmdRead  = protocol.TRANSMISSION_TYPE_REQUEST_READ
	cmdWrite = protocol.TRANSMISSION_TYPE_REQUEST_WRITE
	optGo    = protocol.NEGOTIATION_ID_OPTION_GO
)

func TestExportName(t *testing.T) {
	b := newMemBackend(1 << 20)
	copy(b.data, "hello")
	ts := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: b}, {Name: "other", Backend: b}}})

	for _, noZeroes := range []bool{true, false} {
		c := dialRaw(t, ts.addr)
		flags, replyLen := clientFlagFixedNewstyle, 10+exportNameZeroes
		if noZeroes {
			flags, replyLen = flags|clientFlagNoZeroes, 10
		}
		c.write(flags)
		c.option(optExportName, []byte("disk"))
		reply := make([]byte, replyLen)
		c.read(reply)
		if size := binary.BigEndian.Uint64(reply); size != 1<<20 {
			t.Errorf("NO_ZEROES %v: size %d", noZeroes, size)
		}
		if !bytes.Equal(reply[10:], make([]byte, replyLen-10)) {
			t.Errorf("NO_ZEROES %v: padding is not zeros", noZeroes)
		}
		// Not bound by the minimum block size: it did not ask for it.
		c.request(cmdRead, 0, 7, 1, 4, nil)
		data := make([]byte, 4)
		if r := c.reply(); r.Error != 0 || r.Handle != 7 {
			t.Fatalf("NO_ZEROES %v: read: %+v", noZeroes, r)
		}
		if c.read(data); string(data) != "ello" {
			t.Errorf("NO_ZEROES %v: read %q", noZeroes, data)
		}
	}

	// EXPORT_NAME has no error reply: an unknown name closes the connection.
	c := dialRaw(t, ts.addr)
	c.write(clientFlagFixedNewstyle)
	c.option(optExportName, []byte("missing"))
	c.expectClosed()
}

// TestAlignmentOnlyWhenAgreed: the spec binds a client to the minimum
// block size only if it requested NBD_INFO_BLOCK_SIZE in GO; the kernel's
// nbd-client does not.
func TestAlignmentOnlyWhenAgreed(t *testing.T) {
	ts := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: newMemBackend(1 << 20)}}})
	for _, agreed := range []bool{false, true} {
		c := dialRaw(t, ts.addr)
		c.write(clientFlagFixedNewstyle | clientFlagNoZeroes)
		var requests []uint16
		want := uint32(0)
		if agreed {
			requests, want = []uint16{protocol.NEGOTIATION_TYPE_INFO_BLOCKSIZE}, protocol.TRANSMISSION_ERROR_EINVAL
		}
		c.goTo("disk", requests...)
		c.request(cmdRead, 0, 1, 3, 5, nil)
		if h := c.reply(); h.Error != want {
			t.Errorf("block sizes agreed %v: unaligned read got error %d, want %d", agreed, h.Error, want)
		} else if want == 0 {
			c.read(make([]byte, 5))
		}
	}
}

func TestRejectedClientFlags(t *testing.T) {
	ts := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: newMemBackend(1 << 20)}}})
	for _, flags := range []uint32{0, clientFlagNoZeroes, clientFlagFixedNewstyle | 1<<5} {
		c := dialRaw(t, ts.addr)
		c.write(flags)
		c.expectClosed()
	}
}

func TestOptionErrors(t *testing.T) {
	ts := startServer(t, &Server{Exports: []*Export{
		{Name: "disk", Backend: newMemBackend(1 << 20)},
		{Name: "other", Backend: newMemBackend(1 << 20)},
	}})
	c := dialRaw(t, ts.addr)
	c.write(clientFlagFixedNewstyle | clientFlagNoZeroes)
	for _, o := range []struct {
		what string
		id   uint32
		data []byte
		want uint32
	}{
		{"STARTTLS", 5, nil, protocol.NEGOTIATION_TYPE_REPLY_ERR_UNSUPPORTED},
		{"SET_META_CONTEXT before STRUCTURED_REPLY", 10, []byte("\x00\x00\x00\x04disk\x00\x00\x00\x01\x00\x00\x00\x0fbase:allocation"), repErrInvalid},
		{"LIST_META_CONTEXT before STRUCTURED_REPLY", 9, []byte("\x00\x00\x00\x04disk\x00\x00\x00\x00"), repErrInvalid},
		{"STRUCTURED_REPLY with data", 8, []byte{0}, repErrInvalid},
		{"EXTENDED_HEADERS", 11, nil, protocol.NEGOTIATION_TYPE_REPLY_ERR_UNSUPPORTED},
		{"unknown option with data", 4711, bytes.Repeat([]byte{0xff}, 100), protocol.NEGOTIATION_TYPE_REPLY_ERR_UNSUPPORTED},
		{"LIST with data", protocol.NEGOTIATION_ID_OPTION_LIST, []byte{0}, repErrInvalid},
		{"GO too short", optGo, []byte{0, 0, 0, 0, 0}, repErrInvalid},
		{"GO name longer than the data", optGo, []byte{0, 0, 0, 9, 'd', 'i', 's', 'k', 0, 0}, repErrInvalid},
		{"GO request count mismatch", optGo, append(goData("disk"), 0, 3), repErrInvalid},
		{"GO too long", optGo, make([]byte, maxOptionLen+1), repErrTooBig},
		{"GO to an unknown export", optGo, goData("missing"), protocol.NEGOTIATION_TYPE_REPLY_ERR_UNKNOWN},
		{"GO to the empty name with two exports", optGo, goData(""), protocol.NEGOTIATION_TYPE_REPLY_ERR_UNKNOWN},
		{"INFO to an unknown export", protocol.NEGOTIATION_ID_OPTION_INFO, goData("missing"), protocol.NEGOTIATION_TYPE_REPLY_ERR_UNKNOWN},
	} {
		c.option(o.id, o.data)
		if h, msg := c.optionReply(); h.Type != o.want || h.ID != o.id {
			t.Errorf("%s: reply %+v (%q), want type %#x", o.what, h, msg, o.want)
		}
	}
	// Every payload was drained: the connection still negotiates.
	if size, _ := c.goTo("other"); size != 1<<20 {
		t.Errorf("GO after the errors: size %d", size)
	}
}

func TestRequestErrors(t *testing.T) {
	b := newMemBackend(1 << 20)
	ts := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: b, MaxBlockSize: 64 << 10}}})
	c := dialRaw(t, ts.addr)
	c.handshake("disk")

	for i, r := range []struct {
		what          string
		typ, flags    uint16
		off           uint64
		length        uint32
		payload, want uint32
	}{
		{what: "unknown command, no payload drained", typ: 99, length: 4096, want: protocol.TRANSMISSION_ERROR_EINVAL},
		{what: "CACHE, not advertised", typ: 5, length: 4096, want: protocol.TRANSMISSION_ERROR_EINVAL},
		{what: "BLOCK_STATUS, not negotiated", typ: 7, length: 4096, want: protocol.TRANSMISSION_ERROR_EINVAL},
		{what: "unknown flag", typ: cmdRead, flags: 1 << 7, length: 512, want: protocol.TRANSMISSION_ERROR_EINVAL},
		{what: "NO_HOLE on a write", typ: cmdWrite, flags: cmdFlagNoHole, length: 512, payload: 512, want: protocol.TRANSMISSION_ERROR_EINVAL},
		{what: "write over the maximum", typ: cmdWrite, length: 128 << 10, payload: 128 << 10, want: protocol.TRANSMISSION_ERROR_EINVAL},
		{what: "write past the end", typ: cmdWrite, off: 1<<20 - 512, length: 1024, payload: 1024, want: errENOSPC},
		{what: "misaligned write", typ: cmdWrite, off: 100, length: 512, payload: 512, want: protocol.TRANSMISSION_ERROR_EINVAL},
		{what: "zero-length read past the end", typ: cmdRead, off: 2 << 20},
		{what: "zero-length write", typ: cmdWrite, off: 512},
		{what: "trim larger than the maximum", typ: cmdTrim, length: 1 << 20},
		{what: "flush with FUA", typ: cmdFlush, flags: cmdFlagFUA},
	} {
		cookie := uint64(100 + i)
		c.request(r.typ, r.flags, cookie, r.off, r.length, make([]byte, r.payload))
		if h := c.reply(); h.Error != r.want || h.Handle != cookie {
			t.Errorf("%s: reply %+v, want error %d", r.what, h, r.want)
		}
	}

	// After all that the stream is still in step.
	c.request(cmdWrite, cmdFlagFUA, 1, 512, 512, bytes.Repeat([]byte{9}, 512))
	if h := c.reply(); h.Error != 0 {
		t.Fatalf("write: %+v", h)
	}
	c.request(cmdRead, 0, 2, 512, 512, nil)
	data := make([]byte, 512)
	if h := c.reply(); h.Error != 0 {
		t.Fatalf("read: %+v", h)
	}
	if c.read(data); !bytes.Equal(data, bytes.Repeat([]byte{9}, 512)) {
		t.Errorf("read back %v", data[:8])
	}

	// A payload over 64 MiB is not drained: the connection is dropped.
	c.request(cmdWrite, 0, 3, 0, MaxPayload+1, nil)
	c.expectClosed()
}

func TestBackendErrors(t *testing.T) {
	for _, e := range []struct {
		err  error
		want uint32
	}{
		{errors.New("bucket unreachable"), errEIO},
		{syscall.ENOSPC, errENOSPC},
		{syscall.EDQUOT, errENOSPC},
		{syscall.EROFS, protocol.TRANSMISSION_ERROR_EPERM},
		{syscall.ENOENT, errEIO},
	} {
		ts := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: failingBackend{newMemBackend(1 << 20), e.err}}}})
		c := dialRaw(t, ts.addr)
		c.handshake("disk")
		c.request(cmdRead, 0, 1, 0, 4096, nil)
		c.request(cmdWrite, 0, 2, 0, 4096, make([]byte, 4096))
		c.request(cmdFlush, 0, 3, 0, 0, nil)
		// Replies arrive in any order; a failed READ has no data, so each
		// header must follow the last directly.
		got := map[uint64]uint32{}
		for range 3 {
			h := c.reply()
			got[h.Handle] = h.Error
		}
		if got[1] != e.want || got[2] != e.want || got[3] != 0 {
			t.Errorf("%v: replies (cookie: error) %v, want read and write %d, flush 0", e.err, got, e.want)
		}
	}
}

func TestFlushWaitsForEarlierWrites(t *testing.T) {
	b := newMemBackend(1 << 20)
	b.delay = 50 * time.Millisecond
	ts := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: b}}})
	c := dialRaw(t, ts.addr)
	c.handshake("disk")

	// Pipelined: the writes still run when the FLUSH is read.
	for i := range 4 {
		c.request(cmdWrite, 0, uint64(i), uint64(i)*4096, 4096, make([]byte, 4096))
	}
	c.request(cmdFlush, 0, 99, 0, 0, nil)
	for range 5 {
		if h := c.reply(); h.Error != 0 {
			t.Fatalf("reply %+v", h)
		} else if h.Handle == 99 && b.syncSaw.Load() != 4 {
			t.Fatalf("FLUSH's Sync started after %d of the 4 earlier writes completed", b.syncSaw.Load())
		}
	}
}
