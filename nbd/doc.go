// Package nbd serves Backends to Network Block Device clients (the Linux
// kernel via nbd-client, qemu, libnbd tools).
//
// From github.com/pojntfx/go-nbd v0.3.2 it reuses the wire structs and magic
// numbers of pkg/protocol, and the backend contract, backend.Backend, which
// Backend aliases so any go-nbd backend drops in. The handshake and the
// transmission phase are our own because go-nbd's server.Handle cannot be
// extended or fixed from outside: it serves a connection one request at a
// time (one backend round trip per request, fatal over object storage), it
// never advertises or implements FLUSH, FUA, TRIM, WRITE_ZEROES or READ_ONLY
// (so the kernel drops ZFS's cache flushes), its NBD_OPT_LIST shows only the
// first export, a GO after an INFO can select the wrong export, and it drops
// the connection instead of replying with an error.
//
// What this server speaks: fixed newstyle negotiation with NO_ZEROES;
// NBD_OPT_EXPORT_NAME, LIST, INFO, GO, ABORT, STRUCTURED_REPLY,
// LIST/SET_META_CONTEXT with base:allocation, and STARTTLS when
// Server.TLSConfig is set (tls.go) (others get NBD_REP_ERR_UNSUP); simple replies, or structured ones once negotiated
// (meta.go, structured.go); READ, WRITE, FLUSH, DISC, BLOCK_STATUS, and
// TRIM, WRITE_ZEROES (with fast zero), CACHE and native FUA when the
// backend implements the optional interfaces. READ and WRITE take up to 64
// MiB (MaxPayload), and a client that did not agree to the minimum block
// size may address single bytes (unaligned.go). Requests on a connection
// run concurrently and are answered in completion order; a FLUSH first
// waits for the writes received before it on its connection, then calls
// Sync, which covers all connections, hence NBD_FLAG_CAN_MULTI_CONN.
// Invalid requests get error replies (EINVAL, EPERM, ENOSPC) and the
// connection continues; backend errors map through syscall.Errno (see
// Backend). A WRITE enters the server-wide payload budget only once its
// payload has arrived, so a client that stops sending holds nothing other
// clients wait for; a payload that stops arriving for
// Server.PayloadTimeout closes its connection.
package nbd
