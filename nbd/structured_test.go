package nbd

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/pojntfx/go-nbd/pkg/protocol"
)

// Structured replies, base:allocation and the edge cases of issue 18,
// from doc/proto.md, with a raw client.

// chunk is one structured reply chunk.
type chunk struct {
	flags, typ uint16
	cookie     uint64
	payload    []byte
}

// readChunk reads one structured reply chunk.
func (c *rawClient) readChunk() chunk {
	c.t.Helper()
	var hdr [chunkHeaderLen]byte
	c.read(hdr[:])
	if m := binary.BigEndian.Uint32(hdr[:]); m != structuredReplyMagic {
		c.t.Fatalf("chunk magic %#x, want the structured reply magic", m)
	}
	ch := chunk{flags: binary.BigEndian.Uint16(hdr[4:]), typ: binary.BigEndian.Uint16(hdr[6:]),
		cookie: binary.BigEndian.Uint64(hdr[8:]), payload: make([]byte, binary.BigEndian.Uint32(hdr[16:]))}
	c.read(ch.payload)
	return ch
}

// structuredReply reads the chunks of one reply, up to the one flagged
// DONE; they must all carry cookie.
func (c *rawClient) structuredReply(cookie uint64) []chunk {
	c.t.Helper()
	var chunks []chunk
	for {
		ch := c.readChunk()
		if ch.cookie != cookie {
			c.t.Fatalf("chunk for cookie %d, want %d", ch.cookie, cookie)
		}
		chunks = append(chunks, ch)
		if ch.flags&replyFlagDone != 0 {
			return chunks
		}
	}
}

// replyErrno is the error of a structured reply, 0 if it has none.
func replyErrno(chunks []chunk) uint32 {
	for _, ch := range chunks {
		if ch.typ&(1<<15) != 0 {
			return binary.BigEndian.Uint32(ch.payload)
		}
	}
	return 0
}

// readStructured reads a structured READ reply into a buffer of n bytes
// at off, checking that the content chunks lie within the request and do
// not overlap; holes counts the bytes sent as hole chunks.
func (c *rawClient) readStructured(cookie, off uint64, n int) (data []byte, holes int, errno uint32) {
	c.t.Helper()
	data = make([]byte, n)
	var spans [][2]uint64
	cover := func(at uint64, l int) {
		if at < off || at+uint64(l) > off+uint64(n) || l == 0 {
			c.t.Fatalf("content chunk [%d, +%d) outside the request [%d, +%d)", at, l, off, n)
		}
		spans = append(spans, [2]uint64{at, at + uint64(l)})
	}
	for _, ch := range c.structuredReply(cookie) {
		switch ch.typ {
		case replyTypeOffsetData:
			at := binary.BigEndian.Uint64(ch.payload)
			cover(at, len(ch.payload)-8)
			copy(data[at-off:], ch.payload[8:])
		case replyTypeOffsetHole:
			at, l := binary.BigEndian.Uint64(ch.payload), int(binary.BigEndian.Uint32(ch.payload[8:]))
			cover(at, l)
			clear(data[at-off : int(at-off)+l])
			holes += l
		case replyTypeNone:
		case replyTypeError:
			errno = binary.BigEndian.Uint32(ch.payload)
		default:
			c.t.Fatalf("READ reply chunk of type %d", ch.typ)
		}
	}
	// The chunks must not overlap, and a success must cover the request.
	slices.SortFunc(spans, func(a, b [2]uint64) int { return cmp.Compare(a[0], b[0]) })
	at := off
	for _, sp := range spans {
		if sp[0] < at {
			c.t.Fatalf("content chunks overlap at %d", sp[0])
		}
		if sp[0] > at && errno == 0 {
			c.t.Fatalf("a successful READ reply left [%d, %d) uncovered", at, sp[0])
		}
		at = sp[1]
	}
	if errno == 0 && at != off+uint64(n) {
		c.t.Fatalf("a successful READ reply left [%d, %d) uncovered", at, off+uint64(n))
	}
	return data, holes, errno
}

// metaData encodes the data of LIST_META_CONTEXT and SET_META_CONTEXT.
func metaData(export string, queries ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(export)))
	b = append(b, export...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(queries)))
	for _, q := range queries {
		b = binary.BigEndian.AppendUint32(b, uint32(len(q)))
		b = append(b, q...)
	}
	return b
}

// metaOption sends a META_CONTEXT option and returns the contexts replied
// (id: name) and the final reply type.
func (c *rawClient) metaOption(id uint32, data []byte) (map[string]uint32, uint32) {
	c.t.Helper()
	c.option(id, data)
	got := map[string]uint32{}
	for {
		h, payload := c.optionReply()
		if h.Type != repMetaContext {
			return got, h.Type
		}
		got[string(payload[4:])] = binary.BigEndian.Uint32(payload)
	}
}

// structuredHandshake negotiates structured replies and, with contexts,
// selects them for export, then goes into it (agreeing to block sizes
// when strict).
func (c *rawClient) structuredHandshake(export string, strict bool, contexts ...string) (size uint64, flags uint16) {
	c.t.Helper()
	c.write(clientFlagFixedNewstyle | clientFlagNoZeroes)
	c.option(optStructuredReply, nil)
	if h, _ := c.optionReply(); h.Type != protocol.NEGOTIATION_TYPE_REPLY_ACK {
		c.t.Fatalf("STRUCTURED_REPLY: reply type %#x", h.Type)
	}
	if contexts != nil {
		if _, typ := c.metaOption(optSetMetaContext, metaData(export, contexts...)); typ != protocol.NEGOTIATION_TYPE_REPLY_ACK {
			c.t.Fatalf("SET_META_CONTEXT: reply type %#x", typ)
		}
	}
	if strict {
		return c.goTo(export, protocol.NEGOTIATION_TYPE_INFO_BLOCKSIZE)
	}
	return c.goTo(export)
}

func TestMetaContextNegotiation(t *testing.T) {
	ts := startServer(t, &Server{Exports: []*Export{
		{Name: "disk", Backend: newMemBackend(1 << 20)},
		{Name: "other", Backend: newMemBackend(1 << 20)},
	}})
	c := dialRaw(t, ts.addr)
	c.write(clientFlagFixedNewstyle | clientFlagNoZeroes)
	c.option(optStructuredReply, nil)
	if h, _ := c.optionReply(); h.Type != protocol.NEGOTIATION_TYPE_REPLY_ACK {
		t.Fatalf("STRUCTURED_REPLY: reply type %#x", h.Type)
	}
	alloc := map[string]uint32{metaBaseAllocation: 0}
	for _, m := range []struct {
		what string
		id   uint32
		data []byte
		want map[string]uint32
		typ  uint32
	}{
		{"LIST, no query: every context", optListMetaContext, metaData("disk"), alloc, protocol.NEGOTIATION_TYPE_REPLY_ACK},
		{"LIST base: (wildcard)", optListMetaContext, metaData("disk", "base:"), alloc, protocol.NEGOTIATION_TYPE_REPLY_ACK},
		{"LIST base:allocation and an unknown namespace", optListMetaContext, metaData("disk", "qemu:dirty-bitmap:x", metaBaseAllocation), alloc, protocol.NEGOTIATION_TYPE_REPLY_ACK},
		{"LIST an unknown leaf", optListMetaContext, metaData("disk", "base:other"), map[string]uint32{}, protocol.NEGOTIATION_TYPE_REPLY_ACK},
		{"LIST a query without a namespace", optListMetaContext, metaData("disk", "allocation"), map[string]uint32{}, repErrInvalid},
		{"LIST a query longer than the data", optListMetaContext, metaData("disk", "base:")[:15], map[string]uint32{}, repErrInvalid},
		{"LIST with bytes after the queries", optListMetaContext, append(metaData("disk", "base:"), 0), map[string]uint32{}, repErrInvalid},
		{"LIST for an unknown export", optListMetaContext, metaData("missing"), map[string]uint32{}, protocol.NEGOTIATION_TYPE_REPLY_ERR_UNKNOWN},
		{"SET, no query: nothing", optSetMetaContext, metaData("disk"), map[string]uint32{}, protocol.NEGOTIATION_TYPE_REPLY_ACK},
		{"SET base: selects nothing", optSetMetaContext, metaData("disk", "base:"), map[string]uint32{}, protocol.NEGOTIATION_TYPE_REPLY_ACK},
		{"SET base:allocation twice", optSetMetaContext, metaData("disk", metaBaseAllocation, metaBaseAllocation), map[string]uint32{metaBaseAllocation: metaBaseAllocationID}, protocol.NEGOTIATION_TYPE_REPLY_ACK},
	} {
		got, typ := c.metaOption(m.id, m.data)
		if typ != m.typ || fmt.Sprint(got) != fmt.Sprint(m.want) {
			t.Errorf("%s: contexts %v, reply %#x; want %v, %#x", m.what, got, typ, m.want, m.typ)
		}
	}
	// The connection still negotiates, and the flags say CACHE only for
	// a Cacher (memBackend is none), fast zero with WRITE_ZEROES.
	_, flags := c.goTo("disk")
	if flags&flagSendCache != 0 || flags&flagSendFastZero == 0 || flags&flagSendWriteZeroes == 0 {
		t.Errorf("transmission flags %#x", flags)
	}
}

// A client may send BLOCK_STATUS only with base:allocation selected, for
// the export it went into; otherwise EINVAL, as an error chunk.
func TestBlockStatusNeedsAContext(t *testing.T) {
	ts := startServer(t, &Server{Exports: []*Export{
		{Name: "disk", Backend: newMemBackend(1 << 20)},
		{Name: "other", Backend: newMemBackend(1 << 20)},
	}})
	for _, tc := range []struct {
		what     string
		contexts []string
		setFor   string
	}{
		{"structured replies, no context", nil, ""},
		{"SET with no query", []string{}, "disk"},
		{"SET of an unknown context", []string{"base:other"}, "disk"},
		{"SET for another export", []string{metaBaseAllocation}, "other"},
	} {
		c := dialRaw(t, ts.addr)
		c.write(clientFlagFixedNewstyle | clientFlagNoZeroes)
		c.option(optStructuredReply, nil)
		c.optionReply()
		if tc.contexts != nil {
			c.metaOption(optSetMetaContext, metaData(tc.setFor, tc.contexts...))
		}
		c.goTo("disk", protocol.NEGOTIATION_TYPE_INFO_BLOCKSIZE)
		c.request(cmdBlockStatus, 0, 1, 0, 4096, nil)
		if errno := replyErrno(c.structuredReply(1)); errno != protocol.TRANSMISSION_ERROR_EINVAL {
			t.Errorf("%s: BLOCK_STATUS got error %d, want EINVAL", tc.what, errno)
		}
	}
	// Selected, then replaced by a failing SET: none.
	c := dialRaw(t, ts.addr)
	c.write(clientFlagFixedNewstyle | clientFlagNoZeroes)
	c.option(optStructuredReply, nil)
	c.optionReply()
	c.metaOption(optSetMetaContext, metaData("disk", metaBaseAllocation))
	if _, typ := c.metaOption(optSetMetaContext, metaData("disk", "nonamespace")); typ != repErrInvalid {
		t.Fatalf("SET of a query without a namespace: reply %#x", typ)
	}
	c.goTo("disk")
	c.request(cmdBlockStatus, 0, 1, 0, 4096, nil)
	if errno := replyErrno(c.structuredReply(1)); errno != protocol.TRANSMISSION_ERROR_EINVAL {
		t.Errorf("after a failed SET: BLOCK_STATUS got error %d, want EINVAL", errno)
	}
}

// sparseBackend is a memBackend whose 64 KiB units that are all zeros
// are holes (Extenter), which takes only 512-byte aligned requests
// (Aligner), and which records CACHE requests (Cacher) and says zeroing
// is fast for whole units (FastZeroer).
type sparseBackend struct {
	*memBackend
	mu     sync.Mutex
	cached []span
	reads  [][2]int64
}

const sparseUnit = 64 << 10

func newSparseBackend(size int) *sparseBackend {
	return &sparseBackend{memBackend: newMemBackend(size)}
}

func (b *sparseBackend) Alignment() int64 { return 512 }

func (b *sparseBackend) check(p []byte, off int64) error {
	if (off|int64(len(p)))%512 != 0 {
		return fmt.Errorf("unaligned [%d, +%d): %w", off, len(p), syscall.EINVAL)
	}
	return nil
}

func (b *sparseBackend) ReadAt(p []byte, off int64) (int, error) {
	if err := b.check(p, off); err != nil {
		return 0, err
	}
	b.mu.Lock()
	b.reads = append(b.reads, [2]int64{off, int64(len(p))})
	b.mu.Unlock()
	return b.memBackend.ReadAt(p, off)
}

func (b *sparseBackend) WriteAt(p []byte, off int64) (int, error) {
	if err := b.check(p, off); err != nil {
		return 0, err
	}
	return b.memBackend.WriteAt(p, off)
}

func (b *sparseBackend) Trim(off, n int64) error {
	if err := b.check(make([]byte, n), off); err != nil {
		return err
	}
	return b.memBackend.Trim(off, n)
}

func (b *sparseBackend) ZeroAt(off, n int64, noHole bool) error {
	if err := b.check(make([]byte, n), off); err != nil {
		return err
	}
	return b.memBackend.ZeroAt(off, n, noHole)
}

func (b *sparseBackend) Extents(off, n int64, limit int, fn func(int64, bool)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if off+n > int64(len(b.data)) {
		return syscall.EINVAL
	}
	var runs []ext
	for at := off; at < off+n; {
		end := min((at/sparseUnit+1)*sparseUnit, off+n)
		hole := !bytes.ContainsFunc(b.data[at/sparseUnit*sparseUnit:(at/sparseUnit+1)*sparseUnit], func(r rune) bool { return r != 0 })
		if k := len(runs); k > 0 && runs[k-1].hole == hole {
			runs[k-1].n += end - at
		} else if len(runs) < limit {
			runs = append(runs, ext{end - at, hole})
		} else {
			break
		}
		at = end
	}
	for _, r := range runs {
		fn(r.n, r.hole)
	}
	return nil
}

func (b *sparseBackend) Cache(off, n int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cached = append(b.cached, span{off: off, length: n})
	return nil
}

func (b *sparseBackend) ZeroIsFast(off, n int64) bool { return (off|n)%sparseUnit == 0 }

type ext struct {
	n    int64
	hole bool
}

// blockStatus asks for the extents of [off, +n) and returns them.
func (c *rawClient) blockStatus(cookie uint64, flags uint16, off uint64, n uint32) ([]ext, uint32) {
	c.t.Helper()
	c.request(cmdBlockStatus, flags, cookie, off, n, nil)
	chunks := c.structuredReply(cookie)
	if errno := replyErrno(chunks); errno != 0 {
		return nil, errno
	}
	if len(chunks) != 1 || chunks[0].typ != replyTypeBlockStatus {
		c.t.Fatalf("BLOCK_STATUS reply: %d chunks, the first of type %d", len(chunks), chunks[0].typ)
	}
	p := chunks[0].payload
	if id := binary.BigEndian.Uint32(p); id != metaBaseAllocationID || (len(p)-4)%8 != 0 || len(p) < 12 {
		c.t.Fatalf("BLOCK_STATUS chunk: context %d, %d bytes", id, len(p))
	}
	var out []ext
	for p = p[4:]; len(p) > 0; p = p[8:] {
		l, f := binary.BigEndian.Uint32(p), binary.BigEndian.Uint32(p[4:])
		if l == 0 || (f != 0 && f != stateHole|stateZero) {
			c.t.Fatalf("descriptor length %d, flags %d", l, f)
		}
		out = append(out, ext{int64(l), f != 0})
	}
	return out, 0
}

func TestBlockStatus(t *testing.T) {
	const size = 1 << 20
	be := newSparseBackend(size)
	copy(be.data[sparseUnit:], bytes.Repeat([]byte{1}, 100))   // unit 1
	copy(be.data[4*sparseUnit+5:], bytes.Repeat([]byte{2}, 1)) // unit 4
	ts := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: be}}})
	c := dialRaw(t, ts.addr)
	c.structuredHandshake("disk", true, metaBaseAllocation)
	for i, q := range []struct {
		what  string
		flags uint16
		off   uint64
		n     uint32
		want  []ext
	}{
		{"the whole export", 0, 0, size, []ext{{sparseUnit, true}, {sparseUnit, false}, {2 * sparseUnit, true}, {sparseUnit, false}, {11 * sparseUnit, true}}},
		{"from inside a hole", 0, 512, 2 * sparseUnit, []ext{{sparseUnit - 512, true}, {sparseUnit, false}, {512, true}}},
		{"REQ_ONE", cmdFlagReqOne, 2 * sparseUnit, size - 2*sparseUnit, []ext{{2 * sparseUnit, true}}},
		{"REQ_ONE shorter than the extent", cmdFlagReqOne, 6 * sparseUnit, 4096, []ext{{4096, true}}},
	} {
		got, errno := c.blockStatus(uint64(i), q.flags, q.off, q.n)
		if errno != 0 || fmt.Sprint(got) != fmt.Sprint(q.want) {
			t.Errorf("%s: extents %v (error %d), want %v", q.what, got, errno, q.want)
		}
	}
	// More than a connection's requests in flight (64), one after the
	// other: each gives its place back.
	for i := range 2 * DefaultMaxInflight {
		c.request(cmdCache, 0, uint64(200+i), 0, 4096, nil)
		if errno := replyErrno(c.structuredReply(uint64(200 + i))); errno != 0 {
			t.Fatalf("CACHE %d: error %d", i, errno)
		}
		if _, errno := c.blockStatus(uint64(200+i), 0, 0, 4096); errno != 0 {
			t.Fatalf("BLOCK_STATUS %d: error %d", i, errno)
		}
	}
	for i, bad := range []struct {
		what  string
		flags uint16
		off   uint64
		n     uint32
	}{
		{"past the end", 0, size - 512, 1024},
		{"of length 0", 0, 0, 0},
		{"with an unknown flag", cmdFlagFUA << 6, 0, 4096},
		{"unaligned, block sizes agreed", 0, 100, 4096},
	} {
		if _, errno := c.blockStatus(uint64(100+i), bad.flags, bad.off, bad.n); errno != protocol.TRANSMISSION_ERROR_EINVAL {
			t.Errorf("BLOCK_STATUS %s: error %d, want EINVAL", bad.what, errno)
		}
	}
}

// With structured replies, a READ sends holes as hole chunks (no zeros on
// the wire, no backend read of them), data as data chunks, and an error
// as an error chunk.
func TestStructuredRead(t *testing.T) {
	const size = 1 << 20
	be := newSparseBackend(size)
	want := make([]byte, size)
	copy(want[sparseUnit:], pattern(sparseUnit, 3))
	copy(want[5*sparseUnit:], pattern(2*sparseUnit, 4))
	copy(be.data, want)
	ts := startServer(t, &Server{Exports: []*Export{
		{Name: "disk", Backend: be},
		{Name: "broken", Backend: failingBackend{newMemBackend(size), errors.New("store down")}},
	}})
	c := dialRaw(t, ts.addr)
	c.structuredHandshake("disk", false)
	for i, r := range []struct {
		what        string
		off, n      int
		holes       int
		backendRead int64 // bytes
	}{
		{"a hole", 2 * sparseUnit, 2 * sparseUnit, 2 * sparseUnit, 0},
		{"holes and data", 0, size, 13 * sparseUnit, 3 * sparseUnit},
		{"data only", sparseUnit, sparseUnit, 0, sparseUnit},
		{"small: zeros sent as data", 2 * sparseUnit, 4096, 0, 4096},
		{"unaligned, holes and data", 100, 2*sparseUnit + 1000, sparseUnit - 100 + 1100, sparseUnit},
	} {
		be.mu.Lock()
		be.reads = nil
		be.mu.Unlock()
		c.request(cmdRead, 0, uint64(i), uint64(r.off), uint32(r.n), nil)
		got, holes, errno := c.readStructured(uint64(i), uint64(r.off), r.n)
		if errno != 0 || !bytes.Equal(got, want[r.off:r.off+r.n]) {
			t.Errorf("%s: error %d, or other bytes", r.what, errno)
		}
		var read int64
		be.mu.Lock()
		for _, rd := range be.reads {
			read += rd[1]
		}
		be.mu.Unlock()
		if holes != r.holes || read < r.backendRead || read > r.backendRead+1024 {
			t.Errorf("%s: %d bytes as holes, %d read from the backend; want %d and %d", r.what, holes, read, r.holes, r.backendRead)
		}
	}
	// READ of length 0: a structured reply with no content.
	c.request(cmdRead, 0, 50, 0, 0, nil)
	if chunks := c.structuredReply(50); len(chunks) != 1 || chunks[0].typ != replyTypeNone {
		t.Errorf("READ of length 0: %+v", chunks)
	}
	// Errors are error chunks, for a READ and for any other command.
	c.request(cmdRead, 0, 51, size, 4096, nil)
	if _, _, errno := c.readStructured(51, size, 4096); errno != protocol.TRANSMISSION_ERROR_EINVAL {
		t.Errorf("READ past the end: error %d", errno)
	}
	c.request(cmdWrite, 0, 52, size-512, 1024, make([]byte, 1024))
	if errno := replyErrno(c.structuredReply(52)); errno != errENOSPC {
		t.Errorf("WRITE past the end: error %d", errno)
	}
	c.request(cmdFlush, 0, 53, 0, 0, nil)
	if chunks := c.structuredReply(53); len(chunks) != 1 || chunks[0].typ != replyTypeNone {
		t.Errorf("FLUSH: %+v", chunks)
	}

	b := dialRaw(t, ts.addr)
	b.structuredHandshake("broken", true)
	b.request(cmdRead, 0, 1, 0, 1<<20, nil)
	if _, _, errno := b.readStructured(1, 0, 1<<20); errno != errEIO {
		t.Errorf("READ of a failing backend: error %d, want EIO", errno)
	}
}

// Requests of 64 MiB work, with simple and structured replies, and the
// limit is advertised; a READ over it is EINVAL, a WRITE over it drops
// the connection (TestRequestErrors).
func Test64MiBRequests(t *testing.T) {
	const n = MaxPayload
	be := newMemBackend(n + 1<<20)
	// The daemon's device too, whose cache (64 MiB) is too small to lend a
	// whole 64 MiB read from.
	dev := openSparseDevice(t, n+1<<20, 1<<20, nil, false, 0)
	ts := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: be}, {Name: "device", Backend: dev.Device}}})
	// 64 MiB of a 1 MiB random pattern, shifted by one byte per MiB:
	// cheaper to make than 64 MiB of random bytes, and no two MiB alike.
	unit := pattern(1<<20+64, 7)
	data := make([]byte, 0, n)
	for i := 0; len(data) < n; i++ {
		data = append(data, unit[i%64:i%64+1<<20]...)
	}
	// Simple replies from the memory backend, structured ones from the
	// device.
	for _, structured := range []bool{false, true} {
		export := "disk"
		if structured {
			export = "device"
		}
		c := dialRaw(t, ts.addr)
		if structured {
			c.structuredHandshake(export, true)
		} else {
			c.handshake(export)
		}
		off := uint64(0)
		if structured {
			off = 1 << 20
		}
		c.request(cmdWrite, 0, 1, off, n, data)
		if structured {
			if errno := replyErrno(c.structuredReply(1)); errno != 0 {
				t.Fatalf("structured %v: 64 MiB write: error %d", structured, errno)
			}
		} else if h := c.reply(); h.Error != 0 {
			t.Fatalf("64 MiB write: error %d", h.Error)
		}
		c.request(cmdRead, 0, 2, off, n, nil)
		var got []byte
		if structured {
			var errno uint32
			got, _, errno = c.readStructured(2, off, n)
			if errno != 0 {
				t.Fatalf("64 MiB structured read: error %d", errno)
			}
		} else {
			if h := c.reply(); h.Error != 0 {
				t.Fatalf("64 MiB read: error %d", h.Error)
			}
			got = make([]byte, n)
			c.read(got)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%s, structured %v: 64 MiB read back other bytes", export, structured)
		}
		c.request(cmdRead, 0, 3, 0, n+512, nil)
		if structured {
			if _, _, errno := c.readStructured(3, 0, n+512); errno != protocol.TRANSMISSION_ERROR_EINVAL {
				t.Errorf("read over 64 MiB: error %d", errno)
			}
		} else if h := c.reply(); h.Error != protocol.TRANSMISSION_ERROR_EINVAL {
			t.Errorf("read over 64 MiB: error %d", h.Error)
		}
	}
	out := mustRun(t, "nbdinfo", "--json", ts.uri("disk"))
	if !bytes.Contains([]byte(out), []byte(`"block_size_maximum": 67108864`)) {
		t.Errorf("nbdinfo does not show a 64 MiB maximum:\n%s", out)
	}
}

// Clients that did not agree to block sizes may read, write, zero and
// trim at any byte; the server splits what an aligned-only backend cannot
// take. A client that agreed gets EINVAL.
func TestUnalignedIO(t *testing.T) {
	const size = 1 << 20
	be := newSparseBackend(size)
	model := pattern(size, 11)
	copy(be.data, model)
	ts := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: be}}})
	c := dialRaw(t, ts.addr)
	c.write(clientFlagFixedNewstyle | clientFlagNoZeroes)
	c.option(optExportName, []byte("disk"))
	c.read(make([]byte, 10))
	cookie := uint64(0)
	do := func(typ, flags uint16, off, n int, payload []byte) {
		t.Helper()
		cookie++
		c.request(typ, flags, cookie, uint64(off), uint32(n), payload)
		if h := c.reply(); h.Error != 0 {
			t.Fatalf("command %d [%d, +%d): error %d", typ, off, n, h.Error)
		}
	}
	check := func(off, n int) {
		t.Helper()
		cookie++
		c.request(cmdRead, 0, cookie, uint64(off), uint32(n), nil)
		if h := c.reply(); h.Error != 0 {
			t.Fatalf("read [%d, +%d): error %d", off, n, h.Error)
		}
		got := make([]byte, n)
		if c.read(got); !bytes.Equal(got, model[off:off+n]) {
			t.Fatalf("read [%d, +%d): other bytes", off, n)
		}
	}
	for _, w := range []struct{ off, n int }{{100, 1000}, {1, 1}, {511, 2}, {4000, 70000}, {2048, 100}, {size - 3, 3}} {
		p := pattern(w.n, uint64(w.off))
		do(cmdWrite, 0, w.off, w.n, p)
		copy(model[w.off:], p)
		check(max(w.off-700, 0), min(w.n+1400, size-max(w.off-700, 0)))
	}
	do(cmdWrite, cmdFlagFUA, 10000, 333, pattern(333, 1))
	copy(model[10000:], pattern(333, 1))
	do(cmdWriteZeroes, 0, 300, 5000, nil)
	clear(model[300:5300])
	do(cmdWriteZeroes, cmdFlagNoHole, 20001, 7, nil)
	clear(model[20001:20008])
	check(0, 30000)
	// TRIM is rounded inwards: only the whole sectors are discarded.
	be.callsMu.Lock()
	be.trims = nil
	be.callsMu.Unlock()
	do(cmdTrim, 0, 40000, 3000, nil)
	do(cmdTrim, 0, 50001, 100, nil)
	be.callsMu.Lock()
	if fmt.Sprint(be.trims) != fmt.Sprint([]span{{off: 40448, length: 2048}}) {
		t.Errorf("trims reaching the backend: %v", be.trims)
	}
	be.callsMu.Unlock()

	// Pipelined writes of neighbouring bytes of one sector: every one
	// lands (the read-modify-writes of a sector do not overlap).
	const k = 64
	for i := range k {
		c.request(cmdWrite, 0, uint64(1000+i), uint64(60000+3*i), 3, []byte{byte(i), byte(i), byte(i)})
		copy(model[60000+3*i:], []byte{byte(i), byte(i), byte(i)})
	}
	for range k {
		if h := c.reply(); h.Error != 0 {
			t.Fatalf("pipelined unaligned write: error %d", h.Error)
		}
	}
	check(59000, 2000)

	// Agreed to block sizes: unaligned requests are refused.
	s := dialRaw(t, ts.addr)
	s.handshake("disk")
	for i, r := range []struct {
		typ     uint16
		payload int
	}{{cmdRead, 0}, {cmdWrite, 100}, {cmdTrim, 0}, {cmdWriteZeroes, 0}} {
		s.request(r.typ, 0, uint64(i), 100, 100, make([]byte, r.payload))
		if h := s.reply(); h.Error != protocol.TRANSMISSION_ERROR_EINVAL {
			t.Errorf("command %d unaligned after agreeing to block sizes: error %d", r.typ, h.Error)
		}
	}
}

// CACHE is advertised for a Cacher and reaches it; fast zero succeeds
// only where the backend says zeroing is fast, otherwise ENOTSUP without
// a change.
func TestCacheAndFastZero(t *testing.T) {
	const size = 1 << 20
	be := newSparseBackend(size)
	copy(be.data, pattern(size, 5))
	ts := startServer(t, &Server{Exports: []*Export{
		{Name: "disk", Backend: be},
		{Name: "plain", Backend: newMemBackend(size)},
	}})
	c := dialRaw(t, ts.addr)
	_, flags := c.handshake("disk")
	if flags&flagSendCache == 0 || flags&flagSendFastZero == 0 {
		t.Fatalf("transmission flags %#x: want CACHE and FAST_ZERO", flags)
	}
	for i, r := range []struct {
		what       string
		typ, flags uint16
		off, n     uint64
		want       uint32
	}{
		{"CACHE", cmdCache, 0, 4096, 512 << 10, 0},
		{"CACHE past the end", cmdCache, 0, size - 4096, 8192, protocol.TRANSMISSION_ERROR_EINVAL},
		{"CACHE with an unknown flag", cmdCache, cmdFlagReqOne, 0, 4096, protocol.TRANSMISSION_ERROR_EINVAL},
		{"fast zero of whole units", cmdWriteZeroes, cmdFlagFastZero, sparseUnit, 2 * sparseUnit, 0},
		{"fast zero of part of a unit", cmdWriteZeroes, cmdFlagFastZero, 4 * sparseUnit, 4096, errENOTSUP},
		{"fast zero with NO_HOLE", cmdWriteZeroes, cmdFlagFastZero | cmdFlagNoHole, 8 * sparseUnit, sparseUnit, 0},
		{"FAST_ZERO on a write", cmdWrite, cmdFlagFastZero, 0, 0, protocol.TRANSMISSION_ERROR_EINVAL},
	} {
		c.request(r.typ, r.flags, uint64(i), r.off, uint32(r.n), nil)
		if h := c.reply(); h.Error != r.want {
			t.Errorf("%s: error %d, want %d", r.what, h.Error, r.want)
		}
	}
	be.mu.Lock()
	if fmt.Sprint(be.cached) != fmt.Sprint([]span{{off: 4096, length: 512 << 10}}) {
		t.Errorf("CACHE calls %v", be.cached)
	}
	be.mu.Unlock()
	if !bytes.Equal(be.bytes(4*sparseUnit, 4096), pattern(size, 5)[4*sparseUnit:][:4096]) {
		t.Error("a fast zero that failed changed the data")
	}
	if !bytes.Equal(be.bytes(sparseUnit, 2*sparseUnit), make([]byte, 2*sparseUnit)) {
		t.Error("a fast zero did not zero")
	}

	// Without a FastZeroer every fast zero fails at once; without a
	// Cacher CACHE is not advertised and is EINVAL.
	p := dialRaw(t, ts.addr)
	_, flags = p.handshake("plain")
	if flags&flagSendCache != 0 || flags&flagSendFastZero == 0 {
		t.Errorf("plain: transmission flags %#x", flags)
	}
	p.request(cmdWriteZeroes, cmdFlagFastZero, 1, 0, sparseUnit, nil)
	if h := p.reply(); h.Error != errENOTSUP {
		t.Errorf("plain: fast zero: error %d, want ENOTSUP", h.Error)
	}
	p.request(cmdCache, 0, 2, 0, 4096, nil)
	if h := p.reply(); h.Error != protocol.TRANSMISSION_ERROR_EINVAL {
		t.Errorf("plain: CACHE: error %d, want EINVAL", h.Error)
	}
}

// Structured replies and contexts negotiated before STARTTLS do not
// survive it (doc/proto.md, NBD_OPT_STARTTLS): BLOCK_STATUS is then
// EINVAL and replies are simple, until negotiated again under TLS.
func TestStartTLSForgetsStructuredReplies(t *testing.T) {
	ts := newTLSSetup(t)
	srv := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: newSparseBackend(1 << 20)}}, TLSConfig: ts.server})
	for _, again := range []bool{false, true} {
		c := dialRaw(t, srv.addr)
		c.write(clientFlagFixedNewstyle | clientFlagNoZeroes)
		c.option(optStructuredReply, nil)
		c.optionReply()
		if got, typ := c.metaOption(optSetMetaContext, metaData("disk", metaBaseAllocation)); typ != protocol.NEGOTIATION_TYPE_REPLY_ACK || len(got) != 1 {
			t.Fatalf("SET_META_CONTEXT before TLS: %v, %#x", got, typ)
		}
		if err := c.startTLS(ts.client); err != nil {
			t.Fatal(err)
		}
		if again {
			c.option(optStructuredReply, nil)
			c.optionReply()
			c.metaOption(optSetMetaContext, metaData("disk", metaBaseAllocation))
		}
		c.goTo("disk", protocol.NEGOTIATION_TYPE_INFO_BLOCKSIZE)
		if !again {
			c.request(cmdBlockStatus, 0, 1, 0, 4096, nil)
			if h := c.reply(); h.Error != protocol.TRANSMISSION_ERROR_EINVAL {
				t.Errorf("BLOCK_STATUS with the contexts of before TLS: simple reply error %d, want EINVAL", h.Error)
			}
			continue
		}
		if got, errno := c.blockStatus(1, 0, 0, 4096); errno != 0 || len(got) != 1 || !got[0].hole {
			t.Errorf("BLOCK_STATUS negotiated again under TLS: %v, error %d", got, errno)
		}
	}
}
