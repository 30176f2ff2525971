/*
 * CDDL HEADER START
 *
 * The contents of this file are subject to the terms of the
 * Common Development and Distribution License (the "License").
 * You may not use this file except in compliance with the License.
 *
 * You can obtain a copy of the license at usr/src/OPENSOLARIS.LICENSE
 * or http://www.opensolaris.org/os/licensing.
 * See the License for the specific language governing permissions
 * and limitations under the License.
 *
 * When distributing Covered Code, include this CDDL HEADER in each
 * file and include the License file at usr/src/OPENSOLARIS.LICENSE.
 * If applicable, add the following below this CDDL HEADER, with the
 * fields enclosed by brackets "[]" replaced with your own identifying
 * information: Portions Copyright [yyyy] [name of copyright owner]
 *
 * CDDL HEADER END
 */
/*
 * Copyright (c) 2026 The objbacker authors.
 */

/*
 * The wire protocol between the "objbacker" vdev in the ZFS module and the
 * objbacker daemon, spoken over the misc character device /dev/zfs_objbacker.
 * The daemon's Go mirror of this file is package kernel
 * (kernel/wire.go); a test there compiles this header and compares every
 * size, offset and constant with the Go encoding, byte for byte.
 *
 * TRANSPORT
 *
 * Each open file of /dev/zfs_objbacker is one channel between the kernel and
 * one daemon.  The channel is a byte stream in each direction, with the
 * semantics of a connected SOCK_STREAM socket: read(2) returns any number of
 * bytes of the kernel's messages (at least one; it blocks when there are
 * none, or fails with EAGAIN under O_NONBLOCK), and a message may be split
 * across reads; write(2) accepts any number of whole or partial messages and
 * the kernel consumes them in order.  poll(2) reports POLLIN when kernel
 * bytes are waiting and POLLOUT always; the daemon relies on poll to stop
 * reading at shutdown without closing the device.  The kernel never ends a
 * channel itself, so read(2) does not return 0 in normal operation; a
 * daemon that sees end of stream treats the channel as gone.  Several
 * daemons may hold channels at once, each with its own exports.
 *
 * MESSAGES
 *
 * Every message is a zob_hdr_t, optionally followed by a payload:
 *
 *	kernel -> daemon: I/O requests (READ, WRITE, TRIM, FLUSH), and the reply
 *	                  to HELLO
 *	daemon -> kernel: the HELLO request, replies to I/O requests, BYE
 *
 * Only these carry a payload, of exactly zh_length bytes:
 *	- a WRITE request: the data;
 *	- a READ reply with zh_status 0: the data;
 *	- a HELLO request: zob_hello_t and zo_count zob_export_t;
 *	- a HELLO reply with zh_status 0: zob_hello_reply_t.
 * No other message has a payload, whatever its zh_length says.
 *
 * All fields are little-endian, with explicit widths and explicit padding;
 * the padding fields (zo_pad, zx_pad, zr_pad) are zero.  Both ends run on the same host,
 * so the structs are used in native order and this header refuses to
 * compile on a big-endian target.
 *
 * HANDSHAKE
 *
 * A daemon opens the device and writes one HELLO request: zh_version is the
 * protocol version it speaks (ZOB_VERSION), zh_id any value, zh_length the
 * payload's size, the other fields 0.  The payload lists its exports: name,
 * size and the export id it chose for each (ids are the daemon's; any
 * uint32, unique on the channel).  The kernel answers with a HELLO reply
 * carrying the same zh_id:
 *	- status 0, zh_version = the version both now speak, and
 *	  zob_hello_reply_t as the payload (zh_length is its size);
 *	- ZOB_EPROTONOSUPPORT, zh_version = the version the kernel speaks;
 *	- ZOB_EBUSY: an export name is held by another channel;
 *	- ZOB_EINVAL: a malformed HELLO.
 * After a failed HELLO the kernel sends nothing more; the daemon closes the
 * device.  The kernel sends I/O requests only after a successful HELLO,
 * and a channel registers its exports once.
 *
 * An "objbacker:NAME" vdev uses the export NAME of whichever channel
 * registered it.  Requests carry that channel's export id.
 *
 * REQUESTS AND REPLIES
 *
 * Many requests are in flight at once, on every export of the channel.  The
 * daemon may complete them in any order; each reply carries the zh_id of
 * its request, and echoes its zh_op, zh_flags, zh_export, zh_offset and
 * zh_length.  Request ids are the kernel's: unique among the requests
 * outstanding on the channel.  A reply whose id the kernel does not know
 * (its request timed out) is consumed, payload included, and ignored.
 *
 *	READ	zh_length bytes at zh_offset.  Reply: status 0 and the data, or
 *		an error and no data.
 *	WRITE	the payload at zh_offset.  With ZOB_F_FUA the reply comes only
 *		once the data is durable in the store.
 *	TRIM	discard [zh_offset, zh_offset + zh_length); it then reads as
 *		zeros.  Sent only to exports with ZOB_EXPORT_TRIM.
 *	FLUSH	zh_offset and zh_length are 0.  A successful FLUSH reply
 *		means that every WRITE and TRIM of the same export that
 *		precedes the FLUSH in the request stream is durable in the
 *		store, whether or not its reply has been sent yet.  This
 *		includes, as NBD puts it, every write whose reply the daemon
 *		sent before it received the FLUSH.  A FLUSH that cannot make
 *		one of them durable fails with ZOB_EIO.  The daemon never
 *		answers FLUSH with ZOB_EOPNOTSUPP (ZFS would stop flushing
 *		the vdev for good).
 *
 * READ, WRITE and TRIM ranges are multiples of ZOB_SECTOR_SIZE, not empty,
 * and inside the export; READ and WRITE are at most the zr_max_io that the
 * kernel announced in its HELLO reply, itself at most ZOB_MAX_IO.  TRIM
 * lengths are not bounded by it (the kernel splits TRIMs longer than
 * UINT32_MAX).
 *
 * ERRORS
 *
 * zh_status is 0 or one of the ZOB_E* values (Linux errno numbers).  The
 * daemon answers a request it refuses with an error reply and continues:
 * ZOB_EPROTO for a wrong zh_version, ZOB_EOPNOTSUPP for an unknown zh_op
 * (HELLO and BYE included) or a TRIM of an export without ZOB_EXPORT_TRIM,
 * ZOB_ENXIO for an unknown zh_export, ZOB_EROFS for WRITE or TRIM on a
 * read-only export, ZOB_EINVAL for unknown flags, a non-zero status, or a
 * range that breaks the rules above.  A refused WRITE's payload is read and
 * dropped, so the stream stays in step.  A message without the request
 * magic is not parsable (its id cannot be trusted): the daemon closes the
 * device.  Store failures are ZOB_EIO; a store that is full, ZOB_ENOSPC.
 *
 * DETACHING
 *
 * A daemon that stops on purpose finishes the requests it has read, makes
 * every export durable, and writes one BYE per export before it closes the
 * device: zh_export names the export, zh_status is 0 if every WRITE and
 * TRIM it acknowledged is durable, or ZOB_EIO if some may be lost, and the
 * other fields but zh_magic (ZOB_REQUEST_MAGIC), zh_version and zh_op are
 * 0.  BYE has no reply; the kernel has taken it when the write returns.
 *
 * When the channel closes, requests the kernel sent and did not get a reply
 * for, and those not yet sent, are kept (they are not failed) and reissued,
 * with their ids and in their original order, to the next channel that
 * registers the export, as long as that happens before the kernel's request
 * timeout; otherwise they fail with EIO.  An export whose channel closed
 * without a BYE with status 0, after acknowledging a WRITE or TRIM not yet
 * covered by a successful FLUSH, may have lost acknowledged data: the
 * module must replay those writes to the next channel or stop the pool,
 * never resume silently (see docs/vdev.md).
 */

#ifndef	_ZFS_OBJBACKER_H
#define	_ZFS_OBJBACKER_H

#ifdef __KERNEL__
#include <linux/types.h>
#else
#include <stdint.h>
#endif

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "zfs_objbacker.h: the wire format is little-endian"
#endif

#ifdef	__cplusplus
extern "C" {
#endif

#define	ZOB_DEVICE_NAME		"zfs_objbacker"	/* /dev/zfs_objbacker */

/* zh_magic: the four bytes "ZOBQ" or "ZOBR" on the wire */
#define	ZOB_REQUEST_MAGIC	0x51424f5aU
#define	ZOB_REPLY_MAGIC		0x52424f5aU

#define	ZOB_VERSION		1

/* zh_op */
#define	ZOB_OP_READ		1
#define	ZOB_OP_WRITE		2
#define	ZOB_OP_TRIM		3
#define	ZOB_OP_FLUSH		4
#define	ZOB_OP_HELLO		5
#define	ZOB_OP_BYE		6

/* zh_flags */
#define	ZOB_F_FUA		(1U << 0)	/* WRITE only */

/* zh_status: Linux errno values, named here for both ends */
#define	ZOB_EIO			5
#define	ZOB_ENXIO		6
#define	ZOB_EBUSY		16
#define	ZOB_EINVAL		22
#define	ZOB_ENOSPC		28
#define	ZOB_EROFS		30
#define	ZOB_EPROTO		71
#define	ZOB_EPROTONOSUPPORT	93
#define	ZOB_EOPNOTSUPP		95

/* Limits */
#define	ZOB_SECTOR_SIZE		512
#define	ZOB_MAX_IO		(16U << 20)	/* SPA_MAXBLOCKSIZE */
#define	ZOB_NAME_MAX		64
#define	ZOB_MAX_EXPORTS		1024

typedef struct zob_hdr {
	uint32_t	zh_magic;	/* ZOB_REQUEST_MAGIC, ZOB_REPLY_MAGIC */
	uint16_t	zh_version;	/* ZOB_VERSION */
	uint16_t	zh_op;		/* ZOB_OP_* */
	uint64_t	zh_id;		/* request id, echoed in its reply */
	uint64_t	zh_offset;	/* bytes into the export */
	uint32_t	zh_length;	/* bytes: range, or payload (see above) */
	uint32_t	zh_flags;	/* ZOB_F_* */
	uint32_t	zh_export;	/* export id from HELLO */
	uint32_t	zh_status;	/* 0 or ZOB_E*; 0 in requests but BYE */
} zob_hdr_t;

/* HELLO request payload: this, then zh_count zob_export_t */
typedef struct zob_hello {
	uint32_t	zo_count;	/* 1 to ZOB_MAX_EXPORTS */
	uint32_t	zo_pad;
} zob_hello_t;

/* zx_flags */
#define	ZOB_EXPORT_READONLY	(1U << 0)	/* WRITE and TRIM get EROFS */
#define	ZOB_EXPORT_TRIM		(1U << 1)	/* the export implements TRIM */

typedef struct zob_export {
	uint64_t	zx_size;	/* bytes, a multiple of zx_sector_size */
	uint32_t	zx_id;		/* export id in requests */
	uint32_t	zx_flags;	/* ZOB_EXPORT_* */
	uint32_t	zx_sector_size;	/* smallest I/O unit: ZOB_SECTOR_SIZE */
	uint32_t	zx_block_size;	/* object size: the preferred I/O size */
	uint32_t	zx_name_len;	/* 1 to ZOB_NAME_MAX */
	uint32_t	zx_pad;
	char		zx_name[ZOB_NAME_MAX];	/* zero-padded, no NUL inside */
} zob_export_t;

/* HELLO reply payload */
typedef struct zob_hello_reply {
	uint32_t	zr_max_io;	/* largest READ or WRITE to expect */
	uint32_t	zr_max_inflight; /* most requests outstanding at once */
	uint32_t	zr_timeout_ms;	/* unanswered this long: EIO to ZFS */
	uint32_t	zr_pad;
} zob_hello_reply_t;

/*
 * LABEL READERS
 *
 * zpool import reads the labels of an "objbacker:NAME" vdev before any pool
 * exists: it opens the device read-only and binds that open file to the
 * registered export NAME with ZOB_IOC_BIND (zb_size comes back filled in,
 * ENXIO if no daemon registered NAME).  The file is then no channel:
 * pread(2) at a multiple of ZOB_SECTOR_SIZE becomes READ requests to the
 * export's daemon, like any other, and ZOB_IOC_SIZE returns the size.
 * The daemon sees nothing new.
 */
typedef struct zob_bind {
	char		zb_name[ZOB_NAME_MAX];	/* zero-padded, no NUL inside */
	uint32_t	zb_name_len;		/* 1 to ZOB_NAME_MAX */
	uint32_t	zb_pad;
	uint64_t	zb_size;		/* out: the export's size */
} zob_bind_t;

#define	ZOB_IOC_BIND		0x5a4f0001U	/* zob_bind_t *, in/out */
#define	ZOB_IOC_SIZE		0x5a4f0002U	/* uint64_t *, out */

#if !defined(__cplusplus)
_Static_assert(sizeof (zob_hdr_t) == 40, "zob_hdr_t is 40 bytes");
_Static_assert(sizeof (zob_hello_t) == 8, "zob_hello_t is 8 bytes");
_Static_assert(sizeof (zob_export_t) == 96, "zob_export_t is 96 bytes");
_Static_assert(sizeof (zob_hello_reply_t) == 16,
	"zob_hello_reply_t is 16 bytes");
_Static_assert(sizeof (zob_bind_t) == 80, "zob_bind_t is 80 bytes");
#endif

#ifdef	__cplusplus
}
#endif

#endif	/* _ZFS_OBJBACKER_H */
