"""The fault suite's recording writer: an NBD client (libnbd) driven by the
Go test through commands on stdin, one JSON object a line, that reports
every request it sends and how each ended on stdout, one JSON event a line,
written as it happens so that nothing is lost if the server dies.

Every 4 KiB unit it writes holds a 32-byte header (magic, the unit's byte
offset, the write's id, its "generation") and a filler derived from the
header, so any read-back tells which write a unit came from, or that it is
none of them. writer_test.go's unitBytes and decode make and read the same layout.

Commands (each answered by events, then {"t":"done"}):
  {"cmd":"run", "ops":N, "seed":S, "depth":D, "max_units":M, "fua":P,
   "flush_every":K, "read":P}      random writes, FUA writes, reads, flushes
  {"cmd":"fill", "depth":D}        write every unit once, in 64 KiB writes
  {"cmd":"flush"}
  {"cmd":"quit"}                   disconnect and exit
Events:
  {"t":"w","id":I,"u":FIRST_UNIT,"n":UNITS,"fua":B}   write sent
  {"t":"r","id":I,"u":FIRST_UNIT,"n":UNITS}           read sent
  {"t":"f","id":I}                                     flush sent
  {"t":"ok","id":I[,"gens":[...]]}   request succeeded; a read's decoded
                                     generations (0: zeros, -1: no write's bytes)
  {"t":"err","id":I,"msg":M}         request failed
  {"t":"dead","msg":M}               the connection is gone; the writer exits
Ids are unique across runs: each run starts at the "gen_base" the first
command line ({"uri":…, "gen_base":…, "units":…}) gives.
"""

import hashlib
import json
import os
import random
import struct
import sys

import nbd

UNIT = 4096
MAGIC = b"OBJBFLT1"


def emit(**event):
    os.write(1, (json.dumps(event, separators=(",", ":")) + "\n").encode())


def unit_bytes(off, gen):
    header = MAGIC + struct.pack("<QQ", off, gen) + bytes(8)
    return header + hashlib.sha256(header).digest() * ((UNIT - len(header)) // 32)


ZEROS = bytes(UNIT)


def decode(off, data):
    if data == ZEROS:
        return 0
    if data[:8] != MAGIC:
        return -1
    got_off, gen = struct.unpack_from("<QQ", data, 8)
    if got_off != off or gen == 0 or unit_bytes(off, gen) != data:
        return -1
    return gen


class Dead(Exception):
    pass


class Writer:
    def __init__(self, uri, gen_base, units):
        self.h = nbd.NBD()
        self.h.connect_uri(uri)
        self.next_id = gen_base
        self.units = units
        self.busy = set()  # units with a request in flight
        self.inflight = {}  # cookie -> (id, kind, first unit, units, buffer)

    def new_id(self):
        self.next_id += 1
        return self.next_id

    def free(self, first, n):
        return not any(u in self.busy for u in range(first, first + n))

    def write(self, first, n, fua):
        i = self.new_id()
        buf = b"".join(unit_bytes((first + k) * UNIT, i) for k in range(n))
        emit(t="w", id=i, u=first, n=n, fua=fua)
        flags = nbd.CMD_FLAG_FUA if fua else 0
        cookie = self.h.aio_pwrite(buf, first * UNIT, flags=flags)
        self.track(cookie, i, "w", first, n, None)

    def read(self, first, n):
        i = self.new_id()
        buf = nbd.Buffer(n * UNIT)
        emit(t="r", id=i, u=first, n=n)
        cookie = self.h.aio_pread(buf, first * UNIT)
        self.track(cookie, i, "r", first, n, buf)

    def flush(self):
        i = self.new_id()
        emit(t="f", id=i)
        cookie = self.h.aio_flush()
        self.track(cookie, i, "f", 0, 0, None)

    def track(self, cookie, i, kind, first, n, buf):
        self.inflight[cookie] = (i, kind, first, n, buf)
        self.busy.update(range(first, first + n))

    def reap(self):
        """Waits for progress and reports the requests that ended. Replies
        that arrived before the connection died still count: each command
        is retired as libnbd saw it end."""
        dead = None
        try:
            self.h.poll(1000)
        except nbd.Error as e:
            dead = str(e)
        for cookie in list(self.inflight):
            i, kind, first, n, buf = self.inflight[cookie]
            try:
                if not self.h.aio_command_completed(cookie):
                    continue
                if kind == "r":
                    data = buf.to_bytearray()
                    gens = [decode((first + k) * UNIT, bytes(data[k * UNIT:(k + 1) * UNIT])) for k in range(n)]
                    emit(t="ok", id=i, gens=gens)
                else:
                    emit(t="ok", id=i)
            except nbd.Error as e:
                emit(t="err", id=i, msg=str(e))
            del self.inflight[cookie]
            self.busy.difference_update(range(first, first + n))
        if dead is None and self.h.aio_is_dead():
            dead = "connection dead"
        if dead is not None:
            self.fail_all(dead)

    def fail_all(self, msg):
        """Reports every request still in flight as failed: its reply never
        came."""
        for i, *_ in self.inflight.values():
            emit(t="err", id=i, msg=msg)
        self.inflight.clear()
        raise Dead(msg)

    def drain(self):
        while self.inflight:
            self.reap()

    def run(self, c):
        rng = random.Random(c["seed"])
        depth, max_units = c.get("depth", 8), c.get("max_units", 16)
        since_flush = 0
        issued = 0
        while issued < c["ops"] or self.inflight:
            while issued < c["ops"] and len(self.inflight) < depth:
                if c.get("flush_every") and since_flush >= c["flush_every"]:
                    self.flush()
                    since_flush = 0
                    issued += 1
                    continue
                n = rng.randint(1, max_units)
                first = rng.randrange(0, self.units - n + 1)
                if not self.free(first, n):
                    break  # overlapping requests would make the order of writes to a unit unknowable
                if rng.random() < c.get("read", 0):
                    self.read(first, n)
                else:
                    self.write(first, n, rng.random() < c.get("fua", 0))
                since_flush += 1
                issued += 1
            self.reap()

    def fill(self, c):
        step = 16
        for first in range(0, self.units, step):
            while len(self.inflight) >= c.get("depth", 8):
                self.reap()
            self.write(first, min(step, self.units - first), False)
        self.drain()


def main():
    setup = json.loads(sys.stdin.readline())
    try:
        w = Writer(setup["uri"], setup["gen_base"], setup["units"])
    except nbd.Error as e:
        emit(t="dead", msg="connecting: " + str(e))
        return
    emit(t="done")
    for line in sys.stdin:
        c = json.loads(line)
        try:
            if c["cmd"] == "run":
                w.run(c)
            elif c["cmd"] == "fill":
                w.fill(c)
            elif c["cmd"] == "flush":
                w.flush()
                w.drain()
            elif c["cmd"] == "quit":
                w.h.shutdown()
                emit(t="done")
                return
        except Dead as e:
            emit(t="dead", msg=str(e))
            return
        except nbd.Error as e:
            # Sending failed: the connection is gone.
            try:
                w.fail_all(str(e))
            except Dead:
                pass
            emit(t="dead", msg=str(e))
            return
        emit(t="done")


main()
