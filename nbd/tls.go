package nbd

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/pojntfx/go-nbd/pkg/protocol"
)

// TLS protocol values (doc/proto.md), kept here with the code that uses
// them.
const (
	optStartTLS   = uint32(5)
	repErrTLSReqd = uint32(5 | 1<<31)
)

// tlsPolicy is how a connection's handshake treats TLS (Server.TLSConfig,
// Server.TLSRequired). The zero value is the spec's NOTLS mode: STARTTLS
// is answered NBD_REP_ERR_UNSUP.
type tlsPolicy struct {
	config *tls.Config
	// required: FORCEDTLS, every option but STARTTLS and ABORT is refused
	// until TLS is up. Without it a server with a config runs the spec's
	// SELECTIVETLS mode with no TLS-only export: TLS at the client's
	// choice.
	required bool
}

func (s *Server) tlsPolicy() (tlsPolicy, error) {
	if s.TLSRequired && s.TLSConfig == nil {
		return tlsPolicy{}, errors.New("nbd: TLSRequired without a TLSConfig")
	}
	return tlsPolicy{config: s.TLSConfig, required: s.TLSRequired}, nil
}

// tlsOption applies the TLS rules to an option before anything else sees
// it. It reports handled when it has dealt with the option (read its data
// and answered it, or failed the connection); otherwise the option goes
// on as if TLS did not exist.
func (n *negotiator) tlsOption(opt protocol.NegotiationOptionHeader) (handled bool, err error) {
	if n.tls.config == nil {
		return false, nil // NOTLS: STARTTLS falls to ERR_UNSUP
	}
	switch {
	case opt.ID == optStartTLS:
		return true, n.startTLS(opt)
	case n.tlsUp || !n.tls.required || opt.ID == protocol.NEGOTIATION_ID_OPTION_ABORT:
		return false, nil
	case opt.ID == optExportName:
		// It has no error reply: the spec has the server end the session.
		return true, errors.New("NBD_OPT_EXPORT_NAME before STARTTLS, and TLS is required")
	default:
		if err := n.discard(opt); err != nil {
			return true, err
		}
		return true, n.replyError(opt.ID, repErrTLSReqd, "TLS is required: send NBD_OPT_STARTTLS first")
	}
}

// startTLS answers NBD_OPT_STARTTLS and, once it has sent its ACK, runs
// the TLS handshake: from then on every byte of the connection, options
// and transmission alike, goes through TLS. A failed handshake ends the
// connection, since the client can no longer go on without TLS.
func (n *negotiator) startTLS(opt protocol.NegotiationOptionHeader) error {
	if opt.Length != 0 {
		if err := n.discard(opt); err != nil {
			return err
		}
		return n.replyError(opt.ID, repErrInvalid, "NBD_OPT_STARTTLS takes no data")
	}
	if n.tlsUp {
		return n.replyError(opt.ID, repErrInvalid, "TLS is already up")
	}
	if err := n.reply(opt.ID, protocol.NEGOTIATION_TYPE_REPLY_ACK, nil); err != nil {
		return err
	}
	if err := n.w.Flush(); err != nil {
		return err
	}
	// A client waits for the ACK before its ClientHello; should one have
	// sent it early, it is in n.r's buffer and must reach TLS first.
	var raw net.Conn = n.nc
	if n.r.Buffered() > 0 {
		raw = &readerConn{Conn: n.nc, r: n.r}
	}
	tc := tls.Server(raw, n.tls.config)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	n.nc, n.r, n.w = &tlsConn{Conn: tc}, bufio.NewReaderSize(tc, 32<<10), bufio.NewWriter(tc)
	n.tlsUp = true
	// The spec: nothing negotiated before STARTTLS survives it. LIST and
	// INFO leave no state; structured replies and metadata contexts are
	// dropped (meta.go). Any stateful option added to the negotiator must
	// be reset here.
	n.forgetOptions()
	st := tc.ConnectionState()
	attrs := []any{"version", tls.VersionName(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite)}
	if len(st.PeerCertificates) > 0 {
		attrs = append(attrs, "client", st.PeerCertificates[0].Subject.String())
	}
	n.log.Info("nbd: TLS established", attrs...)
	return nil
}

// discard skips an option's data that will not be looked at.
func (n *negotiator) discard(opt protocol.NegotiationOptionHeader) error {
	if _, err := io.CopyN(io.Discard, n.r, int64(opt.Length)); err != nil {
		return fmt.Errorf("reading option %d data: %w", opt.ID, err)
	}
	return nil
}

// readerConn is a connection whose first bytes were already buffered.
type readerConn struct {
	net.Conn
	r io.Reader
}

func (c *readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// tlsRecord is the most plaintext one TLS record carries.
const tlsRecord = 16 << 10

// tlsConn is a connection in TLS. Each Write of a tls.Conn is at least one
// record and one system call, so writing a batch of replies part by part,
// as net.Buffers does on anything but a socket, would send a 16-byte
// header as a record of its own: writeBatch packs the parts into full
// records instead (see replyWriter).
type tlsConn struct {
	*tls.Conn
	buf []byte // one record's worth, reused: batches are written one at a time
}

func (c *tlsConn) writeBatch(batch [][]byte) error {
	if c.buf == nil {
		c.buf = make([]byte, 0, tlsRecord)
	}
	buf := c.buf[:0]
	for _, p := range batch {
		for len(p) > 0 {
			if len(buf) == 0 && len(p) >= tlsRecord {
				// Whole records straight from the part, no copy.
				n := len(p) - len(p)%tlsRecord
				if _, err := c.Conn.Write(p[:n]); err != nil {
					return err
				}
				p = p[n:]
				continue
			}
			n := copy(buf[len(buf):tlsRecord], p)
			buf, p = buf[:len(buf)+n], p[n:]
			if len(buf) == tlsRecord {
				if _, err := c.Conn.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
	}
	if len(buf) > 0 {
		if _, err := c.Conn.Write(buf); err != nil {
			return err
		}
	}
	return nil
}
