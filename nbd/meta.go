package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/pojntfx/go-nbd/pkg/protocol"
)

// Structured replies and metadata contexts (doc/proto.md, "Structured reply
// chunk message" and "Metadata querying"): NBD_OPT_STRUCTURED_REPLY, then
// NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT with the one
// context served, base:allocation.

// metaOption answers NBD_OPT_STRUCTURED_REPLY and the META_CONTEXT options.
func (n *negotiator) metaOption(id uint32, data []byte) error {
	if id == optStructuredReply {
		if len(data) != 0 {
			return n.replyError(id, repErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data")
		}
		n.structured = true
		return n.reply(id, protocol.NEGOTIATION_TYPE_REPLY_ACK, nil)
	}
	set := id == optSetMetaContext
	if set {
		// Replaces the contexts selected before, even when it fails.
		n.meta = nil
	}
	if !n.structured {
		return n.replyError(id, repErrInvalid, "negotiate structured replies first")
	}
	name, queries, err := parseMetaQueries(data)
	if err != nil {
		return n.replyError(id, repErrInvalid, err.Error())
	}
	e := lookupExport(n.exports, name)
	if e == nil {
		return n.replyError(id, protocol.NEGOTIATION_TYPE_REPLY_ERR_UNKNOWN, fmt.Sprintf("no export named %q", name))
	}
	match := len(queries) == 0 && !set // LIST with no query: every context
	for _, q := range queries {
		if !strings.Contains(q, ":") {
			return n.replyError(id, repErrInvalid, fmt.Sprintf("query %q has no namespace", q))
		}
		// base: is a wildcard for LIST only; other namespaces and leaf
		// names are ignored, as the spec asks.
		if q == metaBaseAllocation || q == "base:" && !set {
			match = true
		}
	}
	if match {
		ctxID := uint32(0) // reserved in LIST replies
		if set {
			ctxID = metaBaseAllocationID
		}
		payload := binary.BigEndian.AppendUint32(nil, ctxID)
		payload = append(payload, metaBaseAllocation...)
		if err := n.reply(id, repMetaContext, payload); err != nil {
			return err
		}
		if set {
			n.meta = e
		}
	}
	return n.reply(id, protocol.NEGOTIATION_TYPE_REPLY_ACK, nil)
}

// parseMetaQueries splits the data of a META_CONTEXT option: the export
// name, then the queries.
func parseMetaQueries(data []byte) (name string, queries []string, err error) {
	str := func() (string, error) {
		if len(data) < 4 {
			return "", errors.New("option data too short")
		}
		l := binary.BigEndian.Uint32(data)
		if uint64(l) > uint64(len(data)-4) {
			return "", errors.New("string length exceeds the option data")
		}
		s := string(data[4 : 4+l])
		data = data[4+l:]
		return s, nil
	}
	if name, err = str(); err != nil {
		return "", nil, err
	}
	if len(data) < 4 {
		return "", nil, errors.New("option data too short")
	}
	count := binary.BigEndian.Uint32(data)
	data = data[4:]
	for range count {
		q, err := str()
		if err != nil {
			return "", nil, err
		}
		queries = append(queries, q)
	}
	if len(data) != 0 {
		return "", nil, errors.New("option data longer than its queries")
	}
	return name, queries, nil
}

// session is the outcome of a successful NBD_OPT_GO or EXPORT_NAME into e.
// BLOCK_STATUS is allowed only if the contexts were selected for the same
// export.
func (n *negotiator) session(e *export, size uint64, strictAlign bool) *session {
	return &session{export: e, size: size, strictAlign: strictAlign,
		structured: n.structured, blockStatus: n.structured && n.meta == e}
}

// forgetOptions drops what earlier options negotiated: structured replies
// and the selected contexts. A successful NBD_OPT_STARTTLS must call it,
// as the spec says ("the server MUST NOT preserve any negotiation state").
func (n *negotiator) forgetOptions() {
	n.structured, n.meta = false, nil
}
