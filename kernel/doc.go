// Package kernel is the daemon side of the native ZFS vdev: the ZFS module,
// patched with an "objbacker" vdev type, forwards each vdev's ZIOs as
// requests over the character device /dev/zfs_objbacker, and a Server
// answers them from the exports' backends (blockmap devices).
//
// The wire protocol is defined once, in C, by
// kernel/module/include/zfs_objbacker.h, which the kernel side includes;
// this package mirrors it (wire.go, hello.go) and a test checks the mirror
// against that header compiled by gcc, byte for byte. Read the header for
// the exact rules; in short: a HELLO registers the daemon's exports, then
// the kernel sends READ, WRITE, TRIM and FLUSH requests, many at once, and
// the daemon answers each by id, in any order. A FLUSH covers every write
// of its export received before it. At shutdown the daemon finishes what it
// read, syncs, and sends one BYE per export saying whether every
// acknowledged write is durable.
//
// The Server is shaped like package nbd's: one reader admits requests under
// a bound on requests in flight and on payload bytes, each request runs in
// its own goroutine, and replies leave through a writer that combines those
// that complete together.
package kernel
