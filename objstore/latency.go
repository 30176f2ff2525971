package objstore

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"
)

// LatencyConfig is the network Latency simulates in front of a store.
type LatencyConfig struct {
	// Latency is how long each request waits before it is answered: a
	// Get's first byte, the answer to a Put, Delete, DeleteIfMatch or Stat,
	// and each page of a listing.
	Latency time.Duration
	// Bandwidth, in bytes per second, paces each request's payload on its
	// own, as one TCP stream would be: a Get's body arrives at this rate
	// and a Put takes len(data)/Bandwidth longer. 0 means no limit.
	Bandwidth int64
	// Jitter draws each wait uniformly from Latency × (1 ± Jitter); it is
	// clamped to [0, 1]. Seed seeds the draws.
	Jitter float64
	Seed   uint64
}

// listPage is how many keys a listing delivers per round trip, as S3's
// ListObjectsV2 does.
const listPage = 1000

// paceChunk bounds the bytes one Read of a paced Get body returns, so that
// a body arrives in pieces, as from a socket, rather than all at its end.
const paceChunk = 64 << 10

// Latency wraps store so that every request takes as long as cfg says, for
// benchmarks and experiments: an in-memory store behind it stands in for a
// remote one without the CPU cost of a real server, and shows whether the
// caller keeps enough requests in flight to hide the latency (throughput =
// bytes in flight / latency). The waits hold no lock, so any number of
// requests wait at once; a context that ends during one ends the request
// with its error. The request reaches store after its wait, so one
// cancelled there has no effect. Without a latency or a bandwidth, Latency
// returns store itself.
func Latency(store Store, cfg LatencyConfig) Store {
	if cfg.Latency <= 0 && cfg.Bandwidth <= 0 {
		return store
	}
	cfg.Jitter = min(max(cfg.Jitter, 0), 1)
	return &latency{next: store, cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed))}
}

type latency struct {
	next Store
	cfg  LatencyConfig

	mu  sync.Mutex // guards rng, only while drawing
	rng *rand.Rand
}

// delay draws one request's latency.
func (l *latency) delay() time.Duration {
	if l.cfg.Jitter == 0 {
		return l.cfg.Latency
	}
	l.mu.Lock()
	u := l.rng.Float64()
	l.mu.Unlock()
	return time.Duration(float64(l.cfg.Latency) * (1 + l.cfg.Jitter*(2*u-1)))
}

// transfer is how long n bytes take at the configured bandwidth.
func (l *latency) transfer(n int64) time.Duration {
	if l.cfg.Bandwidth <= 0 {
		return 0
	}
	// In floating point: n × 1e9 overflows an int64 from 9.2 GB.
	return time.Duration(float64(n) / float64(l.cfg.Bandwidth) * float64(time.Second))
}

// wait blocks for d or until ctx ends, and then returns an error that
// wraps ctx's and names the request.
func wait(ctx context.Context, d time.Duration, op, key string) error {
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("%s %q: waiting for the simulated latency: %w", op, key, ctx.Err())
	case <-timer.C:
		return nil
	}
}

func (l *latency) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, Attrs, error) {
	if err := wait(ctx, l.delay(), "get", key); err != nil {
		return nil, Attrs{}, err
	}
	rc, a, err := l.next.Get(ctx, key, off, n)
	if err != nil || l.cfg.Bandwidth <= 0 {
		return rc, a, err
	}
	return &pacedBody{ReadCloser: rc, ctx: ctx, l: l, key: key, start: time.Now()}, a, nil
}

func (l *latency) Put(ctx context.Context, key string, data []byte, opts PutOptions) (Attrs, error) {
	if err := wait(ctx, l.delay()+l.transfer(int64(len(data))), "put", key); err != nil {
		return Attrs{}, err
	}
	return l.next.Put(ctx, key, data, opts)
}

func (l *latency) Delete(ctx context.Context, key string) error {
	if err := wait(ctx, l.delay(), "delete", key); err != nil {
		return err
	}
	return l.next.Delete(ctx, key)
}

func (l *latency) DeleteIfMatch(ctx context.Context, key, etag string) error {
	if err := wait(ctx, l.delay(), "delete", key); err != nil {
		return err
	}
	return l.next.DeleteIfMatch(ctx, key, etag)
}

func (l *latency) Stat(ctx context.Context, key string) (Attrs, error) {
	if err := wait(ctx, l.delay(), "stat", key); err != nil {
		return Attrs{}, err
	}
	return l.next.Stat(ctx, key)
}

// List waits once per page of listPage keys: before the first, and before
// each key that starts a further page. A listing that starts after a key
// pays for its first page like any other.
func (l *latency) List(ctx context.Context, prefix, startAfter string, fn func(ObjectInfo) error) error {
	if err := wait(ctx, l.delay(), "list", prefix); err != nil {
		return err
	}
	delivered := 0
	return l.next.List(ctx, prefix, startAfter, func(info ObjectInfo) error {
		if delivered > 0 && delivered%listPage == 0 {
			if err := wait(ctx, l.delay(), "list", prefix); err != nil {
				return err
			}
		}
		delivered++
		return fn(info)
	})
}

func (l *latency) Close() error { return l.next.Close() }

// pacedBody delivers a Get's body no faster than the bandwidth allows,
// counted from the first byte, the moment Get returned.
type pacedBody struct {
	io.ReadCloser
	ctx   context.Context
	l     *latency
	key   string
	start time.Time
	read  int64
}

func (b *pacedBody) Read(p []byte) (int, error) {
	if len(p) > paceChunk {
		p = p[:paceChunk]
	}
	n, err := b.ReadCloser.Read(p)
	b.read += int64(n)
	// Bytes that have not arrived when the context ends never arrive.
	if werr := wait(b.ctx, time.Until(b.start.Add(b.l.transfer(b.read))), "get", b.key); werr != nil {
		return 0, werr
	}
	return n, err
}

func (l *latency) ListScansAll() bool { return ListScansAll(l.next) }
