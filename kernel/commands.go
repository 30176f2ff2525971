package kernel

import (
	"io"
	"syscall"
)

// run executes one admitted request on its export's backend and replies.
// buf holds the payload of READ and WRITE; seq is the request's place in
// the export's write barrier (see admit). held is the request's
// share of the payload budget, given back once its payload is no longer
// needed: for a READ, when its reply has been sent, which may be after run
// returns.
func (s *session) run(e *export, h Header, buf *[]byte, seq uint64, held int64) {
	if h.Op == OpRead {
		s.read(e, h, buf, held)
		return
	}
	defer s.limit.Release(held)
	var err error
	switch h.Op {
	case OpWrite:
		err = s.write(e, h, (*buf)[HeaderLen:])
		payloads.Put(buf)
		s.stats.writes.Add(1)
		s.stats.bytesWritten.Add(uint64(h.Length))
	case OpTrim:
		err = e.trim.Trim(int64(h.Offset), int64(h.Length))
		s.stats.trims.Add(1)
	case OpFlush:
		err = s.flush(e, seq)
		s.stats.flushes.Add(1)
	}
	if h.Op != OpFlush {
		e.barrier.End(seq)
	}
	s.reply(h, err)
}

// read replies only once the data is complete: a reply cannot report an
// error after its data.
func (s *session) read(e *export, h Header, buf *[]byte, held int64) {
	if buf == nil {
		s.readLent(e, h, held)
		return
	}
	data := (*buf)[HeaderLen:]
	// A full read counts as success even with an error: io.ReaderAt may
	// report io.EOF alongside the last bytes.
	n, err := e.Backend.ReadAt(data, int64(h.Offset))
	if n < len(data) {
		payloads.Put(buf)
		s.limit.Release(held)
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		s.reply(h, err)
		return
	}
	s.stats.reads.Add(1)
	s.stats.bytesRead.Add(uint64(n))
	s.w.data(h, buf, func() {
		payloads.Put(buf)
		s.limit.Release(held)
	})
}

// readLent replies to a READ from views the backend lends (see read). The
// request keeps its budget until they are written, as a copied reply does.
func (s *session) readLent(e *export, h Header, held int64) {
	views, release, err := e.lender.LendAt(int64(h.Offset), int64(h.Length), make([][]byte, 1, 2))
	if err != nil {
		s.limit.Release(held)
		s.reply(h, err)
		return
	}
	s.stats.reads.Add(1)
	s.stats.bytesRead.Add(uint64(h.Length))
	views[0] = make([]byte, HeaderLen)
	s.w.lent(h, views, func() {
		release()
		s.limit.Release(held)
	})
}

func (s *session) write(e *export, h Header, data []byte) error {
	off := int64(h.Offset)
	if h.Flags&FlagFUA == 0 {
		_, err := e.Backend.WriteAt(data, off)
		return err
	}
	if e.fua != nil {
		_, err := e.fua.WriteAtFUA(data, off)
		return err
	}
	// Sync is wider than FUA needs, but every backend has it.
	if _, err := e.Backend.WriteAt(data, off); err != nil {
		return err
	}
	return e.Backend.Sync()
}

// flush waits for the writes of its export received before it, which may
// still be running, then syncs; Sync covers every write completed before
// it.
func (s *session) flush(e *export, seq uint64) error {
	e.barrier.Wait(seq)
	return e.Backend.Sync()
}

func (s *session) reply(h Header, err error) {
	var errno syscall.Errno
	if err != nil {
		errno = status(err)
		if s.stats.failed.Add(1) == 1 {
			s.log.Error("kernel: backend error (later ones on this channel are only counted)",
				"op", h.Op, "export", h.Export, "offset", h.Offset, "length", h.Length, "err", err, "status", errno)
		}
	}
	s.w.status(h, errno)
}
