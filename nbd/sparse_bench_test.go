package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pojntfx/go-nbd/pkg/protocol"

	"github.com/objbacker/objbacker/internal/testenv"
)

// BenchmarkSparseCopyOut is issue 18's acceptance line: copying out a
// 64 GiB export that holds 256 MiB, side by side with and without
// BLOCK_STATUS (nbdcopy to null:, with and without --no-extents), and a
// plain reader as the server answered before structured replies: simple
// replies, every zero on the wire (plainRead: nbdcopy's defaults, 4
// connections of 64 READs of 256 KiB in flight). All read from a
// blockmap.Device over an in-memory store (a non-volatile device, as
// mem://?latency=0 gives: every block of data is a GET) that counts its
// requests. The 256 blocks of data are spread over the device, one in
// every 256. OBJBACKER_BENCH_SPARSE_GIB sets another size, and
// OBJBACKER_BENCH_SPARSE_LATENCY (a Go duration) a latency for each store
// request, as mem://?latency= does; each copy starts from an empty cache.
//
//	go test -run '^$' -bench SparseCopyOut -benchtime 1x ./nbd/
func BenchmarkSparseCopyOut(b *testing.B) {
	const mib = 1 << 20
	gib := int64(64)
	if v := os.Getenv("OBJBACKER_BENCH_SPARSE_GIB"); v != "" {
		var err error
		if gib, err = strconv.ParseInt(v, 10, 64); err != nil {
			b.Fatal(err)
		}
	}
	size := gib << 30
	blocks := size / mib
	var data []int64
	for blk := int64(0); blk < blocks; blk += blocks / 256 {
		data = append(data, blk)
	}
	var latency time.Duration
	if v := os.Getenv("OBJBACKER_BENCH_SPARSE_LATENCY"); v != "" {
		var err error
		if latency, err = time.ParseDuration(v); err != nil {
			b.Fatal(err)
		}
	}
	nbdcopy := testenv.Command(b, "nbdcopy")
	for b.Loop() {
		var secs [3]float64
		var gets [3]int64
		for i, mode := range []string{"block-status", "no-extents", "plain"} {
			extents := mode == "block-status"
			d := openSparseDevice(b, size, mib, data, false, latency)
			ts := startServer(b, &Server{Exports: []*Export{{Name: "disk", Backend: d.Device, PreferredBlockSize: mib}},
				Log: slog.New(slog.DiscardHandler)})
			args := []string{ts.uri("disk"), "null:"}
			if !extents {
				args = append([]string{"--no-extents"}, args...)
			}
			start := time.Now()
			if mode == "plain" {
				plainRead(b, ts.addr, "disk", size, 4, 64, 256<<10)
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
				out, err := exec.CommandContext(ctx, nbdcopy, args...).CombinedOutput()
				cancel()
				if err != nil {
					b.Fatalf("nbdcopy %v: %v\n%s", args, err, out)
				}
			}
			secs[i] = time.Since(start).Seconds()
			gets[i] = d.counts.Gets.Load()
			b.Logf("%s: %.2f s, %d GETs, %d MiB read from the store, %d MiB of data in a %d GiB export",
				mode, secs[i], gets[i], d.counts.BytesRead.Load()>>20, int64(len(data)), gib)
			ts.stop()
			d.Close()
		}
		b.ReportMetric(secs[0], "s-with-block-status")
		b.ReportMetric(secs[1], "s-without")
		b.ReportMetric(secs[1]/secs[0], "speedup")
		b.ReportMetric(secs[2], "s-plain")
		b.ReportMetric(secs[2]/secs[0], "speedup-vs-plain")
		b.ReportMetric(float64(gets[0]), "GETs-with-block-status")
	}
}

// plainRead reads [0, size) of export with simple replies, as a client
// that negotiates nothing but block sizes: conns connections, each with
// depth READs of reqSize bytes in flight, the data discarded.
func plainRead(b *testing.B, addr, export string, size int64, conns, depth, reqSize int) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	share := (size/int64(conns) + int64(reqSize) - 1) / int64(reqSize) * int64(reqSize)
	for k := range conns {
		c := dialRaw(b, addr)
		c.handshake(export)
		c.nc.SetDeadline(time.Time{})
		from, to := int64(k)*share, min(int64(k+1)*share, size)
		wg.Go(func() {
			slots := make(chan struct{}, depth)
			go func() {
				w := bufio.NewWriterSize(c.nc, 64<<10)
				var hdr [requestHeaderLen]byte
				for off := from; off < to; off += int64(reqSize) {
					slots <- struct{}{}
					binary.BigEndian.PutUint32(hdr[0:], protocol.TRANSMISSION_MAGIC_REQUEST)
					binary.BigEndian.PutUint16(hdr[6:], cmdRead)
					binary.BigEndian.PutUint64(hdr[16:], uint64(off))
					binary.BigEndian.PutUint32(hdr[24:], uint32(min(int64(reqSize), to-off)))
					w.Write(hdr[:])
					if len(slots) == depth || off+int64(reqSize) >= to {
						w.Flush()
					}
				}
			}()
			var rh [replyHeaderLen]byte
			for off := from; off < to; off += int64(reqSize) {
				if _, err := io.ReadFull(c.r, rh[:]); err != nil {
					errs <- err
					return
				}
				if e := binary.BigEndian.Uint32(rh[4:]); e != 0 {
					errs <- fmt.Errorf("READ error %d", e)
					return
				}
				if _, err := c.r.Discard(int(min(int64(reqSize), to-off))); err != nil {
					errs <- err
					return
				}
				<-slots
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}
