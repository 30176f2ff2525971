package blockmap

import (
	"log/slog"
	"testing"
	"time"
)

// BenchmarkListingAtLatency lists 10^6 keys from a store whose LIST pages
// cost a round trip of 50 ms and nothing else, as S3's do: a device of
// 2^20 blocks of 1 MiB, 95 % full (a 1 TiB device). One page after another that is 1000
// pages × 50 ms = 50 s (the store has no other cost, so the figure is
// exact: a lister limited to one listing takes that long). Reported:
// that time over the lister's (x_one_after_another), and its List calls.
//
//	go test -run '^$' -bench ListingAtLatency -benchtime 1x ./blockmap
func BenchmarkListingAtLatency(b *testing.B) {
	const pageDelay = 50 * time.Millisecond
	l := Layout{Geometry{Size: 1 << 40, BlockSize: 1 << 20}, Naming{}}
	for b.Loop() {
		// Blocks 0 to 10^6-1 of the 2^20.
		store := &pagedBucket{blocks: 1000000, stride: 1, pageSize: 1000, pageDelay: pageDelay}
		start := time.Now()
		got, err := CountObjects(b.Context(), store, l, 32, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		if got.Blocks != 1000000 {
			b.Fatalf("%d blocks counted, want 10^6", got.Blocks)
		}
		took := time.Since(start)
		b.ReportMetric(float64(1000*pageDelay)/float64(took), "x_one_after_another")
		b.ReportMetric(float64(store.lists.Load()), "listings")
		b.ReportMetric(took.Seconds(), "s")
	}
}
