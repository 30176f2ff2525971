package kernel_test

import (
	"context"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/objbacker/objbacker/kernel"
)

// FuzzServe feeds arbitrary bytes, as the kernel's side of a registered
// channel, to Serve and requires that it returns promptly once the kernel
// hangs up: no panic, no hang, whatever was sent.
func FuzzServe(f *testing.F) {
	req := func(h kernel.Header, payload ...byte) []byte {
		if h.Magic == 0 {
			h.Magic = kernel.RequestMagic
		}
		if h.Version == 0 {
			h.Version = kernel.Version
		}
		return append(kernel.AppendHeader(nil, h), payload...)
	}
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	for _, seed := range [][]byte{
		req(readReq(0, 0, 4096)),
		req(writeReq(0, 512, 512), make([]byte, 512)...),
		req(kernel.Header{Op: kernel.OpWrite, Flags: kernel.FlagFUA, Length: 1024}, 1, 2, 3),
		req(writeReq(0, 0, 0xffffffff)),
		req(flushReq(0)),
		req(trimReq(0, 1<<16, 1<<17)),
		req(trimReq(1, 0, 512)),
		req(readReq(0, 1<<64-512, 1024)),
		req(kernel.Header{Op: 99, Flags: 0xffffffff, Length: 1 << 30}),
		req(kernel.Header{Op: kernel.OpHello, Length: 24}, make([]byte, 24)...),
		req(kernel.Header{Op: kernel.OpBye, Status: syscall.EIO}),
		req(kernel.Header{Version: 7, Op: kernel.OpRead, Length: 512}),
		req(kernel.Header{Magic: kernel.ReplyMagic, Op: kernel.OpRead, Length: 512}),
		cat(req(writeReq(0, 0, 4096), make([]byte, 4096)...), req(flushReq(0)), req(readReq(0, 0, 4096))),
		{0x5a, 0x4f, 0x42, 0x51, 1, 0},
		{0xde, 0xad},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		k, dev, err := pairFiles()
		if err != nil {
			t.Fatal(err)
		}
		s := &kernel.Server{
			Exports: []*kernel.Export{
				{Name: "disk", Backend: newMemBackend(1 << 20)},
				{Name: "ro", Backend: newMemBackend(64 << 10), ReadOnly: true},
			},
			Log:         slogDiscard,
			MaxInflight: 4,
			MaxBuffered: 64 << 10,
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.Serve(ctx, dev)
		}()
		if err := rawHandshake(k); err != nil {
			t.Fatal(err)
		}
		// The daemon's writes would block if nobody read them.
		go io.Copy(io.Discard, k)
		k.SetWriteDeadline(time.Now().Add(2 * time.Second))
		k.Write(stream)
		k.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Serve still running 5s after the kernel hung up")
		}
	})
}

// pairFiles is a socket pair without the fake kernel, whose reader would
// stop at the first reply it cannot match.
func pairFiles() (kernelEnd, daemonEnd *os.File, err error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "kernel"), os.NewFile(uintptr(fds[1]), "daemon"), nil
}

// rawHandshake accepts any HELLO with a 64 KiB max I/O.
func rawHandshake(k io.ReadWriter) error {
	hb := make([]byte, kernel.HeaderLen)
	if _, err := io.ReadFull(k, hb); err != nil {
		return err
	}
	h := kernel.DecodeHeader(hb)
	if _, err := io.CopyN(io.Discard, k, int64(h.Length)); err != nil {
		return err
	}
	payload := kernel.AppendHelloReply(nil, kernel.HelloReply{MaxIO: 64 << 10, MaxInflight: 16, TimeoutMS: 1000})
	reply := kernel.AppendHeader(nil, kernel.Header{Magic: kernel.ReplyMagic, Version: kernel.Version, Op: kernel.OpHello,
		ID: h.ID, Length: uint32(len(payload))})
	_, err := k.Write(append(reply, payload...))
	return err
}
