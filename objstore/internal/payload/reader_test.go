package payload

import (
	"bytes"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"
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

func TestWriteToSendsTheRestInChunks(t *testing.T) {
	data := make([]byte, 3*writeToChunk+100)
	for i := range data {
		data[i] = byte(i * 7)
	}
	r := NewReader(data)
	if _, err := r.Seek(50, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	var w chunkRecorder
	n, err := io.Copy(&w, r)
	if err != nil || n != int64(len(data)-50) || !bytes.Equal(w.got, data[50:]) {
		t.Fatalf("io.Copy from offset 50: %d bytes, %v; content equal %v", n, err, bytes.Equal(w.got, data[50:]))
	}
	if w.writes != 4 || w.largest != writeToChunk {
		t.Fatalf("%d writes of at most %d bytes; want 4 of at most %d", w.writes, w.largest, writeToChunk)
	}
	if n, err := r.WriteTo(&w); n != 0 || err != nil {
		t.Fatalf("WriteTo at the end: %d, %v; want 0, nil", n, err)
	}
}

func TestWriteToStopsWhenDetached(t *testing.T) {
	r := NewReader(make([]byte, 8*writeToChunk))
	var detached atomic.Bool
	inWrite, release := make(chan struct{}), make(chan struct{})
	writes := 0
	w := writerFunc(func(p []byte) (int, error) {
		if detached.Load() {
			t.Error("WriteTo handed out a chunk after Detach returned")
		}
		writes++
		if writes == 1 {
			close(inWrite)
			<-release
		}
		return len(p), nil
	})
	done := make(chan error, 1)
	go func() {
		_, err := r.WriteTo(w)
		done <- err
	}()
	<-inWrite
	detachReturned := make(chan struct{})
	go func() {
		r.Detach()
		detached.Store(true)
		close(detachReturned)
	}()
	select {
	case <-detachReturned:
		t.Fatal("Detach returned while a chunk was being written")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-detachReturned
	if err := <-done; err != nil && !errors.Is(err, ErrDetached) {
		t.Fatalf("WriteTo: %v; want nil or ErrDetached", err)
	}
	if n, err := r.WriteTo(w); n != 0 || !errors.Is(err, ErrDetached) {
		t.Fatalf("WriteTo after Detach: %d, %v; want 0, ErrDetached", n, err)
	}
}

type chunkRecorder struct {
	got             []byte
	writes, largest int
}

func (c *chunkRecorder) Write(p []byte) (int, error) {
	c.got = append(c.got, p...)
	c.writes++
	c.largest = max(c.largest, len(p))
	return len(p), nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
