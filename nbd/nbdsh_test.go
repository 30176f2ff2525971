package nbd

import (
	"slices"
	"testing"
)

// commandsScript drives every command through libnbd, then, with libnbd's
// client-side checks off, sends what a buggy client would and checks the
// server's error replies and that the connection survives them. nbdsh
// provides h, connected to the "disk" export (8 MiB, maximum 1 MiB).
const commandsScript = `
def expect_error(what, f, want):
    try:
        f()
    except nbd.Error as e:
        assert e.errno == want, f"{what}: got {e.errno} ({e.string}), want {want}"
        return
    raise AssertionError(f"{what}: succeeded, want {want}")

assert h.can_flush() and h.can_fua() and h.can_trim() and h.can_zero() and h.can_multi_conn()
assert h.get_block_size(nbd.SIZE_MINIMUM) == 512
size = h.get_size()
assert size == 8 << 20, size
mib = bytes(range(256)) * 4096

h.pwrite(mib, 0)
assert h.pread(len(mib), 0) == mib
h.pwrite(mib, 1 << 20, nbd.CMD_FLAG_FUA)
assert h.pread(len(mib), 1 << 20) == mib
h.flush()
h.trim(1 << 20, 0)
assert h.pread(1 << 20, 0) == bytes(1 << 20)
h.zero(65536, (1 << 20) + 4096)
h.zero(4096, (1 << 20) + (512 << 10), nbd.CMD_FLAG_NO_HOLE)
want = bytearray(mib)
want[4096:69632] = bytes(65536)
want[512 << 10:(512 << 10) + 4096] = bytes(4096)
assert h.pread(1 << 20, 1 << 20) == want

h.set_strict_mode(0)
expect_error("read past the end", lambda: h.pread(4096, size), "EINVAL")
expect_error("read overflowing the offset", lambda: h.pread(4096, (1 << 64) - 512), "EINVAL")
expect_error("write past the end", lambda: h.pwrite(bytes(4096), size - 512), "ENOSPC")
expect_error("trim past the end", lambda: h.trim(1 << 20, size), "EINVAL")
expect_error("misaligned read offset", lambda: h.pread(512, 1), "EINVAL")
expect_error("misaligned write length", lambda: h.pwrite(bytes(100), 0), "EINVAL")
expect_error("oversized read", lambda: h.pread(2 << 20, 0), "EINVAL")
expect_error("oversized write", lambda: h.pwrite(bytes(2 << 20), 0), "EINVAL")
assert h.pread(1 << 20, 1 << 20) == want, "connection broken after errors"
h.shutdown()
`

func TestNbdshCommands(t *testing.T) {
	b := newMemBackend(8 << 20)
	ts := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: b, MaxBlockSize: 1 << 20}}})
	mustRun(t, "nbdsh", "-u", ts.uri("disk"), "-c", commandsScript)

	if got := b.fuaWrites.Load(); got != 1 {
		t.Errorf("WriteAtFUA calls = %d, want 1", got)
	}
	// FLUSH syncs; the connection flushed nothing after its last writes, so
	// the disconnect syncs once more.
	if got := b.syncs.Load(); got != 2 {
		t.Errorf("Sync calls = %d, want 2 (flush, disconnect)", got)
	}
	trims, zeroes := b.calls()
	if want := []span{{off: 0, length: 1 << 20}}; !slices.Equal(trims, want) {
		t.Errorf("Trim calls = %+v, want %+v", trims, want)
	}
	if want := []span{{off: 1<<20 + 4096, length: 65536}, {off: 1<<20 + 512<<10, length: 4096, noHole: true}}; !slices.Equal(zeroes, want) {
		t.Errorf("ZeroAt calls = %+v, want %+v", zeroes, want)
	}
}

// handshakeScript checks option haggling in libnbd's opt mode.
const handshakeScript = `
import os
h = nbd.NBD()
h.set_opt_mode(True)
h.connect_uri(os.environ["URI"])
names = []
h.opt_list(lambda name, desc: names.append((name, desc)))
assert names == [("full", "all commands"), ("plain", ""), ("ro", "")], names

h.set_export_name("plain")
h.opt_info()
assert h.get_size() == 4 << 20
assert h.get_block_size(nbd.SIZE_MINIMUM) == 4096

# go-nbd kept the export chosen by INFO and let this GO succeed.
h.set_export_name("missing")
try:
    h.opt_go()
    raise AssertionError("GO to a missing export succeeded")
except nbd.Error as e:
    assert e.errno == "ENOENT", e  # libnbd's errno for NBD_REP_ERR_UNKNOWN

h.set_export_name("ro")
h.opt_go()
assert h.is_read_only() and h.get_size() == 2 << 20
h.set_strict_mode(0)
try:
    h.pwrite(bytes(512), 0)
    raise AssertionError("write to a read-only export succeeded")
except nbd.Error as e:
    assert e.errno == "EPERM", e
h.shutdown()

h = nbd.NBD()
h.set_opt_mode(True)
h.connect_uri(os.environ["URI"])
h.opt_abort()
`

func TestNbdshHandshake(t *testing.T) {
	ts := threeExports(t)
	// nbdsh forwards its environment to the script; run passes ours.
	t.Setenv("URI", ts.uri(""))
	mustRun(t, "nbdsh", "-c", handshakeScript)
}
