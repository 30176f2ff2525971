package nbd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/pojntfx/go-nbd/pkg/protocol"
)

const (
	// handshakeTimeout bounds the whole option haggling, so half-open or
	// idle clients do not hold a goroutine forever.
	handshakeTimeout = 30 * time.Second
	// maxOptionLen caps option payloads: room for the longest export name
	// the spec allows (4096 bytes) plus the INFO/GO framing and requests.
	maxOptionLen = 8 << 10
)

// errClientAborted ends the session cleanly after NBD_OPT_ABORT.
var errClientAborted = errors.New("client aborted the handshake")

// session is the outcome of a handshake: the export to serve.
type session struct {
	export *export
	size   uint64
	// strictAlign is set when the client requested NBD_INFO_BLOCK_SIZE in
	// NBD_OPT_GO and thereby agreed to the minimum block size.
	strictAlign bool
	// conn and r carry the transmission phase: the connection the
	// handshake began on, or its TLS layer after NBD_OPT_STARTTLS.
	conn net.Conn
	r    *bufio.Reader
	// structured: see negotiator.structured. blockStatus: base:allocation
	// was selected for this export (meta.go).
	structured, blockStatus bool
}

type negotiator struct {
	log      *slog.Logger
	r        *bufio.Reader
	w        *bufio.Writer
	exports  []*export
	noZeroes bool
	// nc is the connection, replaced with its TLS layer once tlsUp.
	nc    net.Conn
	tls   tlsPolicy
	tlsUp bool
	// structured replies were negotiated (NBD_OPT_STRUCTURED_REPLY); meta
	// is the export for which the last NBD_OPT_SET_META_CONTEXT selected
	// base:allocation, or nil (meta.go).
	structured bool
	meta       *export
}

// negotiate runs the fixed newstyle handshake. Options are handled
// statelessly: each INFO or GO resolves its own export name, so nothing
// selected by an earlier option leaks into a later one.
func negotiate(ctx context.Context, nc net.Conn, r *bufio.Reader, exports []*export, tp tlsPolicy, log *slog.Logger) (*session, error) {
	if err := nc.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) })
	n := &negotiator{log: log, r: r, w: bufio.NewWriter(nc), exports: exports, nc: nc, tls: tp}
	sess, err := n.run()
	if !stop() {
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, err
	}
	sess.conn, sess.r = n.nc, n.r
	return sess, nc.SetDeadline(time.Time{})
}

func (n *negotiator) run() (*session, error) {
	err := binary.Write(n.w, binary.BigEndian, protocol.NegotiationNewstyleHeader{
		OldstyleMagic:  protocol.NEGOTIATION_MAGIC_OLDSTYLE,
		OptionMagic:    protocol.NEGOTIATION_MAGIC_OPTION,
		HandshakeFlags: protocol.NEGOTIATION_HANDSHAKE_FLAG_FIXED_NEWSTYLE | handshakeFlagNoZeroes,
	})
	if err != nil {
		return nil, err
	}
	if err := n.w.Flush(); err != nil {
		return nil, err
	}

	var clientFlags uint32
	if err := binary.Read(n.r, binary.BigEndian, &clientFlags); err != nil {
		return nil, fmt.Errorf("reading client flags: %w", err)
	}
	// The spec makes the server drop clients with unknown flags. Plain
	// newstyle clients could only send EXPORT_NAME, with no way to report
	// errors; every maintained client speaks fixed newstyle.
	if clientFlags&^(clientFlagFixedNewstyle|clientFlagNoZeroes) != 0 {
		return nil, fmt.Errorf("unknown client flags %#x", clientFlags)
	}
	if clientFlags&clientFlagFixedNewstyle == 0 {
		return nil, errors.New("client does not support fixed newstyle negotiation")
	}
	n.noZeroes = clientFlags&clientFlagNoZeroes != 0

	for {
		var opt protocol.NegotiationOptionHeader
		if err := binary.Read(n.r, binary.BigEndian, &opt); err != nil {
			return nil, fmt.Errorf("reading option: %w", err)
		}
		if opt.OptionMagic != protocol.NEGOTIATION_MAGIC_OPTION {
			return nil, fmt.Errorf("bad option magic %#x", opt.OptionMagic)
		}
		sess, err := n.option(opt)
		if err == nil || errors.Is(err, errClientAborted) {
			if ferr := n.w.Flush(); ferr != nil {
				return nil, ferr
			}
		}
		if sess != nil || err != nil {
			return sess, err
		}
	}
}

// option answers one option. It returns a session when transmission
// starts, and an error when the connection must end.
func (n *negotiator) option(opt protocol.NegotiationOptionHeader) (*session, error) {
	if handled, err := n.tlsOption(opt); handled {
		return nil, err
	}
	if opt.Length > maxOptionLen {
		if opt.ID == optExportName {
			return nil, fmt.Errorf("export name of %d bytes", opt.Length)
		}
		if _, err := io.CopyN(io.Discard, n.r, int64(opt.Length)); err != nil {
			return nil, err
		}
		return nil, n.replyError(opt.ID, repErrTooBig, "option data too long")
	}
	data := make([]byte, opt.Length)
	if _, err := io.ReadFull(n.r, data); err != nil {
		return nil, fmt.Errorf("reading option %d data: %w", opt.ID, err)
	}

	switch opt.ID {
	case optExportName:
		return n.exportName(string(data))
	case protocol.NEGOTIATION_ID_OPTION_ABORT:
		// The spec asks servers to ignore data sent with ABORT.
		if err := n.reply(opt.ID, protocol.NEGOTIATION_TYPE_REPLY_ACK, nil); err != nil {
			return nil, err
		}
		return nil, errClientAborted
	case protocol.NEGOTIATION_ID_OPTION_LIST:
		return nil, n.list(opt.ID, data)
	case protocol.NEGOTIATION_ID_OPTION_INFO, protocol.NEGOTIATION_ID_OPTION_GO:
		return n.infoOrGo(opt.ID, data)
	case optStructuredReply, optListMetaContext, optSetMetaContext:
		return nil, n.metaOption(opt.ID, data)
	default:
		// STARTTLS without TLS, EXTENDED_HEADERS and anything newer: the client falls
		// back to what this server speaks.
		return nil, n.replyError(opt.ID, protocol.NEGOTIATION_TYPE_REPLY_ERR_UNSUPPORTED, "")
	}
}

// exportName answers the oldest way into transmission. It has no error
// reply, so an unknown export ends the connection, as the spec requires.
func (n *negotiator) exportName(name string) (*session, error) {
	e := lookupExport(n.exports, name)
	if e == nil {
		return nil, fmt.Errorf("NBD_OPT_EXPORT_NAME: unknown export %q", name)
	}
	size, err := exportSize(e)
	if err != nil {
		return nil, err
	}
	reply := binary.BigEndian.AppendUint64(nil, size)
	reply = binary.BigEndian.AppendUint16(reply, e.flags)
	if !n.noZeroes {
		reply = append(reply, make([]byte, exportNameZeroes)...)
	}
	if _, err := n.w.Write(reply); err != nil {
		return nil, err
	}
	return n.session(e, size, false), nil
}

func (n *negotiator) list(id uint32, data []byte) error {
	if len(data) != 0 {
		return n.replyError(id, repErrInvalid, "NBD_OPT_LIST takes no data")
	}
	// One NBD_REP_SERVER per export; the text after the name is free-form
	// and clients show it as the description.
	for _, e := range n.exports {
		payload := binary.BigEndian.AppendUint32(nil, uint32(len(e.Name)))
		payload = append(payload, e.Name...)
		payload = append(payload, e.Description...)
		if err := n.reply(id, protocol.NEGOTIATION_TYPE_REPLY_SERVER, payload); err != nil {
			return err
		}
	}
	return n.reply(id, protocol.NEGOTIATION_TYPE_REPLY_ACK, nil)
}

func (n *negotiator) infoOrGo(id uint32, data []byte) (*session, error) {
	// Data: name length (32), name, request count (16), requests (16 each).
	if len(data) < 6 {
		return nil, n.replyError(id, repErrInvalid, "option data too short")
	}
	nameLen := binary.BigEndian.Uint32(data)
	if uint64(nameLen) > uint64(len(data)-6) {
		return nil, n.replyError(id, repErrInvalid, "export name length exceeds the option data")
	}
	name := string(data[4 : 4+nameLen])
	rest := data[4+nameLen:]
	count := int(binary.BigEndian.Uint16(rest))
	requests := rest[2:]
	if len(requests) != 2*count {
		return nil, n.replyError(id, repErrInvalid, "information request count does not match the option length")
	}
	var wantName, wantDescription, wantBlockSize bool
	for i := 0; i < len(requests); i += 2 {
		switch binary.BigEndian.Uint16(requests[i:]) {
		case protocol.NEGOTIATION_TYPE_INFO_NAME:
			wantName = true
		case protocol.NEGOTIATION_TYPE_INFO_DESCRIPTION:
			wantDescription = true
		case protocol.NEGOTIATION_TYPE_INFO_BLOCKSIZE:
			wantBlockSize = true
		}
	}

	e := lookupExport(n.exports, name)
	if e == nil {
		return nil, n.replyError(id, protocol.NEGOTIATION_TYPE_REPLY_ERR_UNKNOWN, fmt.Sprintf("no export named %q", name))
	}
	size, err := exportSize(e)
	if err != nil {
		// No reply type fits a failing backend; UNKNOWN keeps the client
		// negotiating, and the message says why.
		n.log.Error("nbd: export unavailable", "export", e.Name, "err", err)
		return nil, n.replyError(id, protocol.NEGOTIATION_TYPE_REPLY_ERR_UNKNOWN, err.Error())
	}

	infos := [][]byte{wire(protocol.NegotiationReplyInfo{
		Type:              protocol.NEGOTIATION_TYPE_INFO_EXPORT,
		Size:              size,
		TransmissionFlags: e.flags,
	})}
	if wantName {
		infos = append(infos, wire(protocol.NegotiationReplyNameHeader{Type: protocol.NEGOTIATION_TYPE_INFO_NAME}, []byte(e.Name)))
	}
	if wantDescription && e.Description != "" {
		infos = append(infos, wire(protocol.NegotiationReplyDescriptionHeader{Type: protocol.NEGOTIATION_TYPE_INFO_DESCRIPTION}, []byte(e.Description)))
	}
	// Sent even unrequested: the spec allows it, and clients that did not
	// ask are not bound by it (see Export.MinBlockSize).
	infos = append(infos, wire(protocol.NegotiationReplyBlockSize{
		Type:               protocol.NEGOTIATION_TYPE_INFO_BLOCKSIZE,
		MinimumBlockSize:   e.min,
		PreferredBlockSize: e.preferred,
		MaximumBlockSize:   e.max,
	}))
	for _, info := range infos {
		if err := n.reply(id, protocol.NEGOTIATION_TYPE_REPLY_INFO, info); err != nil {
			return nil, err
		}
	}
	if err := n.reply(id, protocol.NEGOTIATION_TYPE_REPLY_ACK, nil); err != nil {
		return nil, err
	}
	if id == protocol.NEGOTIATION_ID_OPTION_INFO {
		return nil, nil
	}
	return n.session(e, size, wantBlockSize), nil
}

// wire encodes go-nbd's fixed-size wire structs and byte strings, which
// cannot fail on a bytes.Buffer.
func wire(parts ...any) []byte {
	var b bytes.Buffer
	for _, p := range parts {
		binary.Write(&b, binary.BigEndian, p)
	}
	return b.Bytes()
}

func (n *negotiator) reply(id, typ uint32, payload []byte) error {
	err := binary.Write(n.w, binary.BigEndian, protocol.NegotiationReplyHeader{
		ReplyMagic: protocol.NEGOTIATION_MAGIC_REPLY,
		ID:         id,
		Type:       typ,
		Length:     uint32(len(payload)),
	})
	if err != nil {
		return err
	}
	_, err = n.w.Write(payload)
	return err
}

// replyError sends an error reply; clients show msg to the user.
func (n *negotiator) replyError(id, typ uint32, msg string) error {
	return n.reply(id, typ, []byte(msg))
}

func exportSize(e *export) (uint64, error) {
	size, err := e.Backend.Size()
	if err != nil {
		return 0, fmt.Errorf("export %q: size: %w", e.Name, err)
	}
	if size < 0 {
		return 0, fmt.Errorf("export %q: negative size %d", e.Name, size)
	}
	return uint64(size), nil
}
