package payload

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestReaderReadsLikeBytesReader(t *testing.T) {
	data := []byte("0123456789abcdef")
	if err := iotest.TestReader(NewReader(data), data); err != nil {
		t.Fatal(err)
	}
	r := NewReader(data)
	if r.Len() != len(data) {
		t.Fatalf("Len %d, want %d", r.Len(), len(data))
	}
	if _, err := r.Seek(-4, io.SeekEnd); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "cdef" {
		t.Fatalf("after Seek(-4, End): %q, %v", rest, err)
	}
}

func TestEmptyReader(t *testing.T) {
	for _, data := range [][]byte{nil, {}} {
		if err := iotest.TestReader(NewReader(data), data); err != nil {
			t.Fatalf("%#v: %v", data, err)
		}
	}
}

func TestDetachedReaderLeavesTheBufferAlone(t *testing.T) {
	data := bytes.Repeat([]byte{1}, 64)
	r := NewReader(data)
	head := make([]byte, 8)
	if _, err := r.Read(head); err != nil {
		t.Fatal(err)
	}
	r.Detach()
	if n, err := r.Read(head); n != 0 || !errors.Is(err, ErrDetached) {
		t.Fatalf("Read after Detach: %d, %v; want 0, ErrDetached", n, err)
	}
	if n, err := r.ReadAt(head, 0); n != 0 || !errors.Is(err, ErrDetached) {
		t.Fatalf("ReadAt after Detach: %d, %v; want 0, ErrDetached", n, err)
	}
	if r.Len() != 0 {
		t.Fatalf("Len after Detach: %d", r.Len())
	}
}
