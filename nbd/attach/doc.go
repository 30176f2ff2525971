// Package attach connects Linux NBD devices (/dev/nbdN) to NBD exports and
// keeps them connected: `objbacker attach` and `objbacker detach`.
//
// It drives the kernel's NBD driver over its generic-netlink family "nbd"
// (linux/nbd-netlink.h) through github.com/mdlayher/genetlink, not ioctls:
// only netlink can set a dead-connection timeout, during which the kernel
// holds requests for a new connection instead of failing them, and hand a
// configured device new sockets (NBD_CMD_RECONFIGURE).
//
// The handshake (NBD_OPT_GO) is done here, in user space, on each socket
// before it is handed to the kernel, which then speaks the transmission
// phase on it. A Supervisor watches the sockets it handed over; when they
// die (a daemon restart, a network cut) it dials again with a capped,
// jittered backoff and reconfigures the device, but only after the new
// server's incarnation (see Incarnation) shows that it lost no write the
// device was told was done. A server that may have lost some is never
// reconnected: the device fails its I/O after the dead-connection timeout,
// and ZFS suspends the pool instead of trusting it.
package attach
