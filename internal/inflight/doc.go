// Package inflight holds what both request servers — the NBD server (nbd)
// and the vdev daemon (kernel) — need to run many requests of one stream at
// once: admission within a request count and a byte budget, a barrier that
// orders a FLUSH after the writes received before it, and payload buffers
// with room for a reply header in front.
package inflight
