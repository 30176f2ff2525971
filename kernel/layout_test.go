package kernel_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/objbacker/objbacker/internal/testenv"
	"github.com/objbacker/objbacker/kernel"
)

// layoutProgram prints, for the header file as C sees it: each struct's
// size, each field's offset and size, each constant, and the bytes of one
// sample of each struct.
const layoutProgram = `
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include "zfs_objbacker.h"

#define S(t) printf("size %s %zu\n", #t, sizeof (t))
#define F(t, f) printf("field %s.%s %zu %zu\n", #t, #f, offsetof(t, f), sizeof (((t *)0)->f))
#define C(c) printf("const %s %llu\n", #c, (unsigned long long)(c))

static void
dump(const char *name, const void *p, size_t n)
{
	const unsigned char *b = p;
	printf("bytes %s ", name);
	for (size_t i = 0; i < n; i++)
		printf("%02x", b[i]);
	printf("\n");
}

int
main(void)
{
	S(zob_hdr_t);
	F(zob_hdr_t, zh_magic); F(zob_hdr_t, zh_version); F(zob_hdr_t, zh_op);
	F(zob_hdr_t, zh_id); F(zob_hdr_t, zh_offset); F(zob_hdr_t, zh_length);
	F(zob_hdr_t, zh_flags); F(zob_hdr_t, zh_export); F(zob_hdr_t, zh_status);
	S(zob_hello_t);
	F(zob_hello_t, zo_count); F(zob_hello_t, zo_pad);
	S(zob_export_t);
	F(zob_export_t, zx_size); F(zob_export_t, zx_id); F(zob_export_t, zx_flags);
	F(zob_export_t, zx_sector_size); F(zob_export_t, zx_block_size);
	F(zob_export_t, zx_name_len); F(zob_export_t, zx_pad); F(zob_export_t, zx_name);
	S(zob_hello_reply_t);
	F(zob_hello_reply_t, zr_max_io); F(zob_hello_reply_t, zr_max_inflight);
	F(zob_hello_reply_t, zr_timeout_ms); F(zob_hello_reply_t, zr_pad);

	C(ZOB_REQUEST_MAGIC); C(ZOB_REPLY_MAGIC); C(ZOB_VERSION);
	C(ZOB_OP_READ); C(ZOB_OP_WRITE); C(ZOB_OP_TRIM); C(ZOB_OP_FLUSH);
	C(ZOB_OP_HELLO); C(ZOB_OP_BYE); C(ZOB_F_FUA);
	C(ZOB_EXPORT_READONLY); C(ZOB_EXPORT_TRIM);
	C(ZOB_SECTOR_SIZE); C(ZOB_MAX_IO); C(ZOB_NAME_MAX); C(ZOB_MAX_EXPORTS);
	C(ZOB_EIO); C(ZOB_ENXIO); C(ZOB_EBUSY); C(ZOB_EINVAL); C(ZOB_ENOSPC);
	C(ZOB_EROFS); C(ZOB_EPROTO); C(ZOB_EPROTONOSUPPORT); C(ZOB_EOPNOTSUPP);
	printf("string ZOB_DEVICE_NAME %s\n", ZOB_DEVICE_NAME);

	zob_hdr_t h;
	memset(&h, 0, sizeof (h));
	h.zh_magic = ZOB_REQUEST_MAGIC;
	h.zh_version = ZOB_VERSION;
	h.zh_op = ZOB_OP_WRITE;
	h.zh_id = 0x0102030405060708ULL;
	h.zh_offset = 0x1112131415161718ULL;
	h.zh_length = 0x21222324;
	h.zh_flags = ZOB_F_FUA;
	h.zh_export = 0x31323334;
	h.zh_status = ZOB_EPROTO;
	dump("zob_hdr_t", &h, sizeof (h));

	zob_hello_t o;
	memset(&o, 0, sizeof (o));
	o.zo_count = 1;
	dump("zob_hello_t", &o, sizeof (o));

	zob_export_t x;
	memset(&x, 0, sizeof (x));
	x.zx_size = 0x4142434445464748ULL;
	x.zx_id = 0x51525354;
	x.zx_flags = ZOB_EXPORT_READONLY | ZOB_EXPORT_TRIM;
	x.zx_sector_size = ZOB_SECTOR_SIZE;
	x.zx_block_size = 1 << 20;
	x.zx_name_len = 5;
	memcpy(x.zx_name, "disk0", 5);
	dump("zob_export_t", &x, sizeof (x));

	zob_hello_reply_t r;
	memset(&r, 0, sizeof (r));
	r.zr_max_io = ZOB_MAX_IO;
	r.zr_max_inflight = 1000;
	r.zr_timeout_ms = 30000;
	dump("zob_hello_reply_t", &r, sizeof (r));
	return (0);
}
`

type cLayout struct {
	sizes  map[string]int
	fields map[string][2]int // offset, size
	consts map[string]uint64
	bytes  map[string][]byte
	device string
}

// compileLayout builds and runs layoutProgram with gcc against the header.
func compileLayout(t *testing.T) cLayout {
	t.Helper()
	gcc := testenv.Command(t, "gcc")
	dir := t.TempDir()
	src := filepath.Join(dir, "layout.c")
	if err := os.WriteFile(src, []byte(layoutProgram), 0o644); err != nil {
		t.Fatal(err)
	}
	include, err := filepath.Abs(filepath.Join("module", "include"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	bin := filepath.Join(dir, "layout")
	// -pedantic -Werror: the header must stay plain C, which the kernel's
	// gnu11 accepts too.
	out, err := exec.CommandContext(ctx, gcc, "-std=c11", "-Wall", "-Wextra", "-pedantic", "-Werror",
		"-I", include, "-o", bin, src).CombinedOutput()
	if err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	out, err = exec.CommandContext(ctx, bin).Output()
	if err != nil {
		t.Fatalf("layout program: %v", err)
	}
	l := cLayout{sizes: map[string]int{}, fields: map[string][2]int{}, consts: map[string]uint64{}, bytes: map[string][]byte{}}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		switch f[0] {
		case "size":
			l.sizes[f[1]] = atoi(t, f[2])
		case "field":
			l.fields[f[1]] = [2]int{atoi(t, f[2]), atoi(t, f[3])}
		case "const":
			v, err := strconv.ParseUint(f[2], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			l.consts[f[1]] = v
		case "bytes":
			b, err := hex.DecodeString(f[2])
			if err != nil {
				t.Fatal(err)
			}
			l.bytes[f[1]] = b
		case "string":
			l.device = f[2]
		}
	}
	return l
}

func atoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// goField encodes a struct with one field set. base is the encoding with
// the field at its zero value, set the encoding with the field at value
// (little-endian, width bits).
type goField struct {
	name      string
	base, set []byte
	value     uint64
}

func headerField(name string, value uint64, set func(*kernel.Header)) goField {
	var h kernel.Header
	f := goField{name: "zob_hdr_t." + name, base: kernel.AppendHeader(nil, h), value: value}
	set(&h)
	f.set = kernel.AppendHeader(nil, h)
	return f
}

func exportField(name string, value uint64, set func(*kernel.ExportInfo)) goField {
	// The name is 64 NUL bytes in both encodings, so that only the field
	// under test differs.
	e := kernel.ExportInfo{Name: strings.Repeat("\x00", kernel.NameMax)}
	f := goField{name: "zob_export_t." + name, base: kernel.AppendHello(nil, []kernel.ExportInfo{e})[8:], value: value}
	set(&e)
	f.set = kernel.AppendHello(nil, []kernel.ExportInfo{e})[8:]
	return f
}

func replyField(name string, value uint64, set func(*kernel.HelloReply)) goField {
	var r kernel.HelloReply
	f := goField{name: "zob_hello_reply_t." + name, base: kernel.AppendHelloReply(nil, r), value: value}
	set(&r)
	f.set = kernel.AppendHelloReply(nil, r)
	return f
}

const ones64 = ^uint64(0)

// TestLayoutMatchesC: the Go encoding puts every field at the offset and
// width the C header gives it, and the sizes, constants and sample
// encodings agree byte for byte.
func TestLayoutMatchesC(t *testing.T) {
	c := compileLayout(t)

	sizes := map[string]int{
		"zob_hdr_t":         kernel.HeaderLen,
		"zob_hello_t":       len(kernel.AppendHello(nil, nil)),
		"zob_export_t":      kernel.ExportInfoLen,
		"zob_hello_reply_t": kernel.HelloReplyLen,
	}
	for name, want := range sizes {
		if c.sizes[name] != want {
			t.Errorf("sizeof(%s) = %d in C, %d in Go", name, c.sizes[name], want)
		}
	}

	// Each field at all ones where Go can express it; zx_name_len and
	// zo_count follow the name and the export list, so they take the
	// largest value the protocol allows instead.
	name64 := strings.Repeat("\xff", kernel.NameMax)
	fields := []goField{
		headerField("zh_magic", ones64>>32, func(h *kernel.Header) { h.Magic = ^uint32(0) }),
		headerField("zh_version", ones64>>48, func(h *kernel.Header) { h.Version = ^uint16(0) }),
		headerField("zh_op", ones64>>48, func(h *kernel.Header) { h.Op = kernel.Op(^uint16(0)) }),
		headerField("zh_id", ones64, func(h *kernel.Header) { h.ID = ones64 }),
		headerField("zh_offset", ones64, func(h *kernel.Header) { h.Offset = ones64 }),
		headerField("zh_length", ones64>>32, func(h *kernel.Header) { h.Length = ^uint32(0) }),
		headerField("zh_flags", ones64>>32, func(h *kernel.Header) { h.Flags = ^uint32(0) }),
		headerField("zh_export", ones64>>32, func(h *kernel.Header) { h.Export = ^uint32(0) }),
		headerField("zh_status", ones64>>32, func(h *kernel.Header) { h.Status = syscall.Errno(^uint32(0)) }),
		exportField("zx_size", ones64, func(e *kernel.ExportInfo) { e.Size = ones64 }),
		exportField("zx_id", ones64>>32, func(e *kernel.ExportInfo) { e.ID = ^uint32(0) }),
		exportField("zx_flags", ones64>>32, func(e *kernel.ExportInfo) { e.Flags = ^uint32(0) }),
		exportField("zx_sector_size", ones64>>32, func(e *kernel.ExportInfo) { e.SectorSize = ^uint32(0) }),
		exportField("zx_block_size", ones64>>32, func(e *kernel.ExportInfo) { e.BlockSize = ^uint32(0) }),
		replyField("zr_max_io", ones64>>32, func(r *kernel.HelloReply) { r.MaxIO = ^uint32(0) }),
		replyField("zr_max_inflight", ones64>>32, func(r *kernel.HelloReply) { r.MaxInflight = ^uint32(0) }),
		replyField("zr_timeout_ms", ones64>>32, func(r *kernel.HelloReply) { r.TimeoutMS = ^uint32(0) }),
		{
			name:  "zob_export_t.zx_name_len",
			base:  kernel.AppendHello(nil, []kernel.ExportInfo{{}})[8:],
			set:   kernel.AppendHello(nil, []kernel.ExportInfo{{Name: strings.Repeat("\x00", kernel.NameMax)}})[8:],
			value: kernel.NameMax,
		},
		{
			name:  "zob_hello_t.zo_count",
			base:  kernel.AppendHello(nil, nil),
			set:   kernel.AppendHello(nil, make([]kernel.ExportInfo, kernel.MaxExports))[:8],
			value: kernel.MaxExports,
		},
	}
	zeroName := strings.Repeat("\x00", kernel.NameMax)
	nameBase := kernel.AppendHello(nil, []kernel.ExportInfo{{Name: zeroName}})[8:]
	nameSet := kernel.AppendHello(nil, []kernel.ExportInfo{{Name: name64}})[8:]
	for _, f := range fields {
		checkField(t, c, f)
	}
	if off := c.fields["zob_export_t.zx_name"]; !slices.Equal(diffSpan(nameBase, nameSet), []int{off[0], off[0] + off[1]}) ||
		off[1] != kernel.NameMax {
		t.Errorf("zx_name: C has offset %d size %d; Go changes bytes %v", off[0], off[1], diffSpan(nameBase, nameSet))
	}
	// Padding: nothing Go encodes lands there.
	for _, pad := range []string{"zob_hello_t.zo_pad", "zob_export_t.zx_pad", "zob_hello_reply_t.zr_pad"} {
		if _, ok := c.fields[pad]; !ok {
			t.Errorf("C has no field %s", pad)
		}
	}
	checkCovered(t, c)

	consts := map[string]uint64{
		"ZOB_REQUEST_MAGIC": kernel.RequestMagic, "ZOB_REPLY_MAGIC": kernel.ReplyMagic, "ZOB_VERSION": kernel.Version,
		"ZOB_OP_READ": uint64(kernel.OpRead), "ZOB_OP_WRITE": uint64(kernel.OpWrite), "ZOB_OP_TRIM": uint64(kernel.OpTrim),
		"ZOB_OP_FLUSH": uint64(kernel.OpFlush), "ZOB_OP_HELLO": uint64(kernel.OpHello), "ZOB_OP_BYE": uint64(kernel.OpBye),
		"ZOB_F_FUA": kernel.FlagFUA, "ZOB_EXPORT_READONLY": kernel.ExportReadOnly, "ZOB_EXPORT_TRIM": kernel.ExportTrim,
		"ZOB_SECTOR_SIZE": kernel.SectorSize, "ZOB_MAX_IO": kernel.MaxIO, "ZOB_NAME_MAX": kernel.NameMax,
		"ZOB_MAX_EXPORTS": kernel.MaxExports,
		"ZOB_EIO":         uint64(syscall.EIO), "ZOB_ENXIO": uint64(syscall.ENXIO), "ZOB_EBUSY": uint64(syscall.EBUSY),
		"ZOB_EINVAL": uint64(syscall.EINVAL), "ZOB_ENOSPC": uint64(syscall.ENOSPC), "ZOB_EROFS": uint64(syscall.EROFS),
		"ZOB_EPROTO": uint64(syscall.EPROTO), "ZOB_EPROTONOSUPPORT": uint64(syscall.EPROTONOSUPPORT),
		"ZOB_EOPNOTSUPP": uint64(syscall.EOPNOTSUPP),
	}
	for name, want := range consts {
		got, ok := c.consts[name]
		if !ok || got != want {
			t.Errorf("%s = %d (printed: %v) in C, %d in Go", name, got, ok, want)
		}
	}
	if len(c.consts) != len(consts) {
		t.Errorf("C printed %d constants, Go checks %d", len(c.consts), len(consts))
	}
	if c.device != kernel.DeviceName {
		t.Errorf("ZOB_DEVICE_NAME = %q, Go DeviceName = %q", c.device, kernel.DeviceName)
	}

	// The samples the C program filled in, encoded by Go.
	h := kernel.Header{Magic: kernel.RequestMagic, Version: kernel.Version, Op: kernel.OpWrite,
		ID: 0x0102030405060708, Offset: 0x1112131415161718, Length: 0x21222324,
		Flags: kernel.FlagFUA, Export: 0x31323334, Status: syscall.EPROTO}
	hello := kernel.AppendHello(nil, []kernel.ExportInfo{{Size: 0x4142434445464748, ID: 0x51525354,
		Flags: kernel.ExportReadOnly | kernel.ExportTrim, SectorSize: kernel.SectorSize, BlockSize: 1 << 20, Name: "disk0"}})
	samples := map[string][]byte{
		"zob_hdr_t":         kernel.AppendHeader(nil, h),
		"zob_hello_t":       hello[:8],
		"zob_export_t":      hello[8:],
		"zob_hello_reply_t": kernel.AppendHelloReply(nil, kernel.HelloReply{MaxIO: kernel.MaxIO, MaxInflight: 1000, TimeoutMS: 30000}),
	}
	for name, want := range samples {
		if got := c.bytes[name]; !bytes.Equal(got, want) {
			t.Errorf("sample %s:\nC  %x\nGo %x", name, got, want)
		}
	}
	// And back: Go decodes the C samples to the values C put in.
	if got := kernel.DecodeHeader(c.bytes["zob_hdr_t"]); got != h {
		t.Errorf("DecodeHeader(C sample) = %+v, want %+v", got, h)
	}
	exports, err := kernel.ParseHello(append(append([]byte(nil), c.bytes["zob_hello_t"]...), c.bytes["zob_export_t"]...))
	if err != nil || len(exports) != 1 || exports[0].Name != "disk0" || exports[0].Size != 0x4142434445464748 {
		t.Errorf("ParseHello(C sample) = %+v, %v", exports, err)
	}
	if r, err := kernel.ParseHelloReply(c.bytes["zob_hello_reply_t"]); err != nil || r.MaxIO != kernel.MaxIO || r.MaxInflight != 1000 || r.TimeoutMS != 30000 {
		t.Errorf("ParseHelloReply(C sample) = %+v, %v", r, err)
	}
}

// checkField: the bytes Go changes when it sets the field are exactly C's
// [offset, offset+size), and hold the value in little-endian order.
func checkField(t *testing.T, c cLayout, f goField) {
	t.Helper()
	off, ok := c.fields[f.name]
	if !ok {
		t.Errorf("C has no field %s", f.name)
		return
	}
	span := diffSpan(f.base, f.set)
	if len(span) == 0 || span[0] < off[0] || span[1] > off[0]+off[1] {
		t.Errorf("%s: Go changes bytes %v, outside C's [%d, %d)", f.name, span, off[0], off[0]+off[1])
		return
	}
	want := binary.LittleEndian.AppendUint64(nil, f.value)
	if off[1] > len(want) {
		t.Errorf("%s: C size %d", f.name, off[1])
		return
	}
	if got := f.set[off[0] : off[0]+off[1]]; !bytes.Equal(got, want[:off[1]]) || f.value>>(8*off[1]) != 0 && off[1] < 8 {
		t.Errorf("%s: Go encodes %x at C's offset %d, want %d as %d little-endian bytes", f.name, got, off[0], f.value, off[1])
	}
}

// checkCovered: the C fields tile each struct with no hole, so there is no
// implicit padding for the two compilers to disagree on.
func checkCovered(t *testing.T, c cLayout) {
	t.Helper()
	for name, size := range c.sizes {
		covered := make([]int, size)
		for f, off := range c.fields {
			if strings.HasPrefix(f, name+".") {
				for i := off[0]; i < off[0]+off[1] && i < size; i++ {
					covered[i]++
				}
			}
		}
		for i, n := range covered {
			if n != 1 {
				t.Errorf("%s byte %d is covered by %d fields", name, i, n)
				break
			}
		}
	}
}

// diffSpan returns [first, last+1) of the bytes that differ, or nil.
func diffSpan(a, b []byte) []int {
	first, last := -1, -1
	for i := range a {
		if a[i] != b[i] {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return nil
	}
	return []int{first, last + 1}
}
