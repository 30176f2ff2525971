package nbd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	mrand "math/rand/v2"
	"net"
	"strings"
	"testing"

	"github.com/pojntfx/go-nbd/pkg/protocol"

	"github.com/objbacker/objbacker/internal/testcert"
)

// These tests check the TLS rules of doc/proto.md ("TLS support" and
// NBD_OPT_STARTTLS) with a raw client that upgrades with crypto/tls.

// tlsSetup is a CA, a server configuration with its certificate and a
// client configuration that trusts it.
type tlsSetup struct {
	ca     *testcert.CA
	server *tls.Config
	client *tls.Config
}

func newTLSSetup(t *testing.T) *tlsSetup {
	ca := testcert.NewCA(t, "nbd test CA")
	return &tlsSetup{
		ca:     ca,
		server: &tls.Config{Certificates: []tls.Certificate{ca.Server(t).TLS(t)}},
		client: &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"},
	}
}

// startTLS sends NBD_OPT_STARTTLS, expects its ACK and upgrades the
// connection; it returns the handshake's error.
func (c *rawClient) startTLS(cfg *tls.Config) error {
	c.t.Helper()
	c.option(optStartTLS, nil)
	if h, msg := c.optionReply(); h.Type != protocol.NEGOTIATION_TYPE_REPLY_ACK || h.ID != optStartTLS {
		c.t.Fatalf("STARTTLS: reply %#x to option %d (%s), want ACK", h.Type, h.ID, msg)
	}
	if c.r.Buffered() > 0 {
		c.t.Fatalf("STARTTLS: %d bytes after the ACK before TLS", c.r.Buffered())
	}
	tc := tls.Client(c.nc, cfg)
	if err := tc.Handshake(); err != nil {
		return err
	}
	c.nc, c.r = tc, bufio.NewReader(tc)
	return nil
}

// expectOptionReply sends an option and checks the type of its one reply.
func (c *rawClient) expectOptionReply(name string, id uint32, data []byte, want uint32) {
	c.t.Helper()
	c.option(id, data)
	if h, msg := c.optionReply(); h.Type != want || h.ID != id {
		c.t.Errorf("%s: reply %#x to option %d (%q), want %#x", name, h.Type, h.ID, msg, want)
	}
}

// roundTrip writes and reads back through an export in transmission.
func (c *rawClient) roundTrip(off uint64, data []byte) {
	c.t.Helper()
	c.request(cmdWrite, 0, 1, off, uint32(len(data)), data)
	if r := c.reply(); r.Error != 0 || r.Handle != 1 {
		c.t.Fatalf("write: %+v", r)
	}
	c.request(cmdRead, 0, 2, off, uint32(len(data)), nil)
	if r := c.reply(); r.Error != 0 || r.Handle != 2 {
		c.t.Fatalf("read: %+v", r)
	}
	got := make([]byte, len(data))
	if c.read(got); !bytes.Equal(got, data) {
		c.t.Fatalf("read back %q, want %q", got, data)
	}
}

// FORCEDTLS: before STARTTLS every option but STARTTLS and ABORT gets
// NBD_REP_ERR_TLS_REQD, unknown ones and INFO included; after it none
// does, and a second STARTTLS is NBD_REP_ERR_INVALID.
func TestTLSRequired(t *testing.T) {
	ts := newTLSSetup(t)
	b := newMemBackend(1 << 20)
	srv := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: b}}, TLSConfig: ts.server, TLSRequired: true})

	c := dialRaw(t, srv.addr)
	c.write(clientFlagFixedNewstyle | clientFlagNoZeroes)
	for _, o := range []struct {
		name string
		id   uint32
		data []byte
	}{
		{"LIST", protocol.NEGOTIATION_ID_OPTION_LIST, nil},
		{"INFO", protocol.NEGOTIATION_ID_OPTION_INFO, goData("disk")},
		{"GO", optGo, goData("disk", protocol.NEGOTIATION_TYPE_INFO_BLOCKSIZE)},
		{"GO to a missing export", optGo, goData("missing")},
		{"STRUCTURED_REPLY", 8, nil},
		{"SET_META_CONTEXT", 10, []byte("\x00\x00\x00\x04disk\x00\x00\x00\x01\x00\x00\x00\x0fbase:allocation")},
		{"unknown option with data", 4711, bytes.Repeat([]byte{0xff}, 100)},
		{"option data over the limit", optGo, make([]byte, maxOptionLen+1)},
	} {
		c.expectOptionReply(o.name+" before TLS", o.id, o.data, repErrTLSReqd)
	}
	c.expectOptionReply("STARTTLS with data", optStartTLS, []byte{0}, repErrInvalid)

	if err := c.startTLS(ts.client); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	c.expectOptionReply("STARTTLS once TLS is up", optStartTLS, nil, repErrInvalid)
	c.expectOptionReply("unknown option over TLS", 4711, nil, protocol.NEGOTIATION_TYPE_REPLY_ERR_UNSUPPORTED)
	c.expectOptionReply("INFO for a missing export over TLS", protocol.NEGOTIATION_ID_OPTION_INFO, goData("missing"), protocol.NEGOTIATION_TYPE_REPLY_ERR_UNKNOWN)
	c.option(protocol.NEGOTIATION_ID_OPTION_LIST, nil)
	if h, data := c.optionReply(); h.Type != protocol.NEGOTIATION_TYPE_REPLY_SERVER || !strings.Contains(string(data), "disk") {
		t.Fatalf("LIST over TLS: reply %#x %q", h.Type, data)
	}
	if h, _ := c.optionReply(); h.Type != protocol.NEGOTIATION_TYPE_REPLY_ACK {
		t.Fatalf("LIST over TLS: reply %#x, want ACK", h.Type)
	}
	if size, _ := c.goTo("disk", protocol.NEGOTIATION_TYPE_INFO_BLOCKSIZE); size != 1<<20 {
		t.Fatalf("size %d over TLS", size)
	}
	c.roundTrip(4096, bytes.Repeat([]byte("tls!"), 1024))
	c.request(protocol.TRANSMISSION_TYPE_REQUEST_DISC, 0, 3, 0, 0, nil)
	c.expectClosed()
	if !bytes.Equal(b.data[4096:8192], bytes.Repeat([]byte("tls!"), 1024)) {
		t.Fatal("the write over TLS did not reach the backend")
	}
}

// FORCEDTLS: ABORT is answered before TLS; EXPORT_NAME, which has no error
// reply, ends the connection.
func TestTLSRequiredAbortAndExportName(t *testing.T) {
	ts := newTLSSetup(t)
	srv := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: newMemBackend(1 << 20)}}, TLSConfig: ts.server, TLSRequired: true})

	c := dialRaw(t, srv.addr)
	c.write(clientFlagFixedNewstyle)
	c.expectOptionReply("ABORT before TLS", protocol.NEGOTIATION_ID_OPTION_ABORT, nil, protocol.NEGOTIATION_TYPE_REPLY_ACK)
	c.expectClosed()

	c = dialRaw(t, srv.addr)
	c.write(clientFlagFixedNewstyle)
	c.option(optExportName, []byte("disk"))
	c.expectClosed()

	// After TLS, EXPORT_NAME enters transmission.
	for _, noZeroes := range []bool{false, true} {
		c = dialRaw(t, srv.addr)
		flags, replyLen := clientFlagFixedNewstyle, 10+exportNameZeroes
		if noZeroes {
			flags, replyLen = flags|clientFlagNoZeroes, 10
		}
		c.write(flags)
		if err := c.startTLS(ts.client); err != nil {
			t.Fatal(err)
		}
		c.option(optExportName, []byte("disk"))
		reply := make([]byte, replyLen)
		if c.read(reply); binary.BigEndian.Uint64(reply) != 1<<20 {
			t.Fatalf("EXPORT_NAME over TLS: size %d", binary.BigEndian.Uint64(reply))
		}
		c.roundTrip(512, []byte("byte-granular, as EXPORT_NAME agreed to no block size"))
	}
}

// SELECTIVETLS with no TLS-only export (--tls on): the client chooses.
func TestTLSOptional(t *testing.T) {
	ts := newTLSSetup(t)
	srv := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: newMemBackend(1 << 20)}}, TLSConfig: ts.server})

	plain := dialRaw(t, srv.addr)
	plain.handshake("disk")
	plain.roundTrip(0, bytes.Repeat([]byte("in the clear"), 512))

	c := dialRaw(t, srv.addr)
	c.write(clientFlagFixedNewstyle | clientFlagNoZeroes)
	// Options before STARTTLS are answered, and leave nothing behind.
	c.expectOptionReply("INFO for a missing export before TLS", protocol.NEGOTIATION_ID_OPTION_INFO, goData("missing"), protocol.NEGOTIATION_TYPE_REPLY_ERR_UNKNOWN)
	if err := c.startTLS(ts.client); err != nil {
		t.Fatal(err)
	}
	c.expectOptionReply("STARTTLS twice", optStartTLS, nil, repErrInvalid)
	c.goTo("disk", protocol.NEGOTIATION_TYPE_INFO_BLOCKSIZE)
	c.roundTrip(0, bytes.Repeat([]byte("encrypted"), 512))
}

// Mutual TLS: a client certificate signed by the configured CA is
// required; none, or one from another CA, ends the connection.
func TestTLSClientCertificates(t *testing.T) {
	ts := newTLSSetup(t)
	clientCA, otherCA := testcert.NewCA(t, "client CA"), testcert.NewCA(t, "another CA")
	ts.server.ClientAuth, ts.server.ClientCAs = tls.RequireAndVerifyClientCert, clientCA.Pool()
	srv := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: newMemBackend(1 << 20)}}, TLSConfig: ts.server, TLSRequired: true})

	withCert := func(p *testcert.Pair) *tls.Config {
		cfg := ts.client.Clone()
		if p != nil {
			// Sent whatever CAs the server names: crypto/tls would
			// otherwise leave out a certificate the server cannot take.
			cert := p.TLS(t)
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
		}
		return cfg
	}
	good, foreign := clientCA.Client(t, "good client"), otherCA.Client(t, "foreign client")
	// Signed by the server's CA, which is not the one for clients.
	serverCASigned := ts.ca.Client(t, "wrong CA client")
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
	}{
		{"no certificate", withCert(nil)},
		{"a certificate from another CA", withCert(&foreign)},
		{"a certificate from the server's CA", withCert(&serverCASigned)},
	} {
		c := dialRaw(t, srv.addr)
		c.write(clientFlagFixedNewstyle | clientFlagNoZeroes)
		// In TLS 1.3 the client's handshake ends before the server has
		// checked its certificate: the refusal comes with the first read.
		err := c.startTLS(tc.cfg)
		if err == nil {
			c.option(protocol.NEGOTIATION_ID_OPTION_LIST, nil)
			var h protocol.NegotiationReplyHeader
			err = binary.Read(c.r, binary.BigEndian, &h)
		}
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), "tls: ") && !errors.Is(err, io.EOF) {
			t.Errorf("%s: refused with %v, want a TLS alert or the connection closed", tc.name, err)
		}
		t.Logf("%s: refused: %v", tc.name, err)
	}

	c := dialRaw(t, srv.addr)
	c.write(clientFlagFixedNewstyle | clientFlagNoZeroes)
	if err := c.startTLS(withCert(&good)); err != nil {
		t.Fatal(err)
	}
	c.goTo("disk", protocol.NEGOTIATION_TYPE_INFO_BLOCKSIZE)
	c.roundTrip(0, bytes.Repeat([]byte("mutual"), 512))
}

// A client that sends no TLS after the ACK (or garbage) does not get in.
func TestTLSHandshakeGarbage(t *testing.T) {
	ts := newTLSSetup(t)
	srv := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: newMemBackend(1 << 20)}}, TLSConfig: ts.server})
	c := dialRaw(t, srv.addr)
	c.write(clientFlagFixedNewstyle | clientFlagNoZeroes)
	c.option(optStartTLS, nil)
	if h, _ := c.optionReply(); h.Type != protocol.NEGOTIATION_TYPE_REPLY_ACK {
		t.Fatalf("STARTTLS: reply %#x", h.Type)
	}
	c.option(optGo, goData("disk"))
	// The server answers a bad record with an alert (a TLS record, type
	// 21), then closes; it never answers the option in the clear.
	rest, _ := io.ReadAll(c.r)
	if len(rest) > 0 && rest[0] != 21 {
		t.Fatalf("after a plain option in place of a ClientHello the server sent %q", rest)
	}
}

func TestTLSRequiredWithoutConfig(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Exports: []*Export{{Name: "disk", Backend: newMemBackend(1 << 20)}}, TLSRequired: true, Log: testLogger(t)}
	if err := s.Serve(context.Background(), ln); err == nil || !strings.Contains(err.Error(), "TLSRequired") {
		t.Fatalf("Serve: %v, want an error for TLSRequired without TLSConfig", err)
	}
}

// pipelinedConn sends its first write behind prefix, in one segment, and
// drops the first skip bytes it reads.
type pipelinedConn struct {
	net.Conn
	prefix []byte
	skip   int
}

func (c *pipelinedConn) Write(p []byte) (int, error) {
	if c.prefix != nil {
		buf := append(c.prefix, p...)
		c.prefix = nil
		n, err := c.Conn.Write(buf)
		return max(n-(len(buf)-len(p)), 0), err
	}
	return c.Conn.Write(p)
}

func (c *pipelinedConn) Read(p []byte) (int, error) {
	for c.skip > 0 {
		n, err := c.Conn.Read(p[:min(len(p), c.skip)])
		c.skip -= n
		if err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(p)
}

// A client that sends its ClientHello right behind STARTTLS, before the
// ACK (the server has then read part of it already), still gets TLS.
func TestTLSClientHelloPipelined(t *testing.T) {
	ts := newTLSSetup(t)
	srv := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: newMemBackend(1 << 20)}}, TLSConfig: ts.server, TLSRequired: true})
	c := dialRaw(t, srv.addr)
	c.write(clientFlagFixedNewstyle | clientFlagNoZeroes)
	var opt bytes.Buffer
	binary.Write(&opt, binary.BigEndian, protocol.NegotiationOptionHeader{OptionMagic: protocol.NEGOTIATION_MAGIC_OPTION, ID: optStartTLS})
	// The ACK: reply magic, option, type, length.
	const ackLen = 8 + 4 + 4 + 4
	tc := tls.Client(&pipelinedConn{Conn: c.nc, prefix: opt.Bytes(), skip: ackLen}, ts.client)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.nc, c.r = tc, bufio.NewReader(tc)
	c.goTo("disk", protocol.NEGOTIATION_TYPE_INFO_BLOCKSIZE)
	c.roundTrip(0, bytes.Repeat([]byte("pipelined"), 512))
}

// writeBatch packs parts of any size into records and loses or reorders
// no byte.
func TestTLSWriteBatch(t *testing.T) {
	ts := newTLSSetup(t)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	server := &tlsConn{Conn: tls.Server(a, ts.server)}
	client := tls.Client(b, ts.client)

	rng := mrand.New(mrand.NewPCG(1, 2))
	var batches [][][]byte
	var want []byte
	for range 50 {
		var batch [][]byte
		for range 1 + rng.IntN(8) {
			// Headers, small payloads, record multiples, and over.
			size := []int{16, 1 + rng.IntN(4096), tlsRecord, 2*tlsRecord + rng.IntN(tlsRecord), rng.IntN(300 << 10)}[rng.IntN(5)]
			p := make([]byte, size)
			for i := range p {
				p[i] = byte(rng.Uint32())
			}
			batch = append(batch, p)
			want = append(want, p...)
		}
		batches = append(batches, batch)
	}
	errc := make(chan error, 1)
	go func() {
		for _, batch := range batches {
			if err := server.writeBatch(batch); err != nil {
				errc <- err
				return
			}
		}
		errc <- server.Close()
	}()
	got, err := io.ReadAll(client)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want %d; the stream differs", len(got), len(want))
	}
}
