package inflight

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBudgetNeverOvercommits(t *testing.T) {
	budget := NewBudget(10 << 20)
	var inUse, peak atomic.Int64
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			l := NewLimiter(4, budget)
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 200 {
				held, ok := l.Acquire(context.Background(), uint32(r.IntN(4<<20)+1))
				if !ok {
					t.Error("Acquire failed without cancellation")
					return
				}
				now := inUse.Add(held)
				if got := budget.InUse(); got > budget.Size() || got < held {
					t.Errorf("InUse = %d while %d is held, in a budget of %d", got, held, budget.Size())
				}
				for p := peak.Load(); now > p && !peak.CompareAndSwap(p, now); p = peak.Load() {
				}
				inUse.Add(-held)
				l.Release(held)
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > 10<<20 {
		t.Fatalf("%d bytes held at once in a budget of %d", p, 10<<20)
	}
	if got := budget.InUse(); got != 0 {
		t.Fatalf("InUse = %d with nothing held", got)
	}
	if !budget.sem.TryAcquire(10 << 20) {
		t.Fatal("budget not back to empty")
	}
}

func TestLimiterBoundsAndCancel(t *testing.T) {
	l := NewLimiter(2, NewBudget(8))
	ctx := context.Background()
	a, _ := l.Acquire(ctx, 6)
	// Larger than the budget: takes all of it, once it is free.
	got := make(chan int64)
	go func() { held, _ := l.Acquire(ctx, 100); got <- held }()
	select {
	case <-got:
		t.Fatal("an oversized request ran while the budget was in use")
	case <-time.After(20 * time.Millisecond):
	}
	// A third request exceeds the request count and waits; cancelled, it
	// gives up without holding anything.
	cctx, cancel := context.WithCancel(ctx)
	cancelled := make(chan bool)
	go func() { _, ok := l.Acquire(cctx, 0); cancelled <- ok }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	if <-cancelled {
		t.Fatal("a cancelled Acquire succeeded")
	}
	l.Release(a)
	held := <-got
	// It holds the whole budget: nothing else fits until it is released.
	if budget := l.budgets[0]; budget.sem.TryAcquire(1) {
		t.Fatal("an oversized request left room in the budget")
	}
	if got := l.budgets[0].InUse(); got != 8 {
		t.Errorf("InUse = %d; want the whole budget, 8", got)
	}
	l.Release(held)
	if !l.budgets[0].sem.TryAcquire(8) {
		t.Fatal("budget not back to empty")
	}
}

// A stream whose share is half the shared budget holds at most half: a
// second stream is admitted while the first holds all it may, and every
// byte comes back from both budgets.
func TestLimiterShare(t *testing.T) {
	shared := NewBudget(8)
	a := NewLimiter(8, NewBudget(4), shared)
	b := NewLimiter(8, NewBudget(4), shared)
	ctx := context.Background()
	var held []int64
	for range 2 {
		h, _ := a.Acquire(ctx, 2)
		held = append(held, h)
	}
	if got := shared.InUse(); got != 4 {
		t.Errorf("shared InUse = %d; want 4", got)
	}
	waiting := make(chan int64)
	go func() { h, _ := a.Acquire(ctx, 2); waiting <- h }()
	select {
	case <-waiting:
		t.Fatal("a stream took more than its share")
	case <-time.After(20 * time.Millisecond):
	}
	admitted := make(chan int64)
	go func() { h, _ := b.Acquire(ctx, 4); admitted <- h }()
	select {
	case h := <-admitted:
		b.Release(h)
	case <-time.After(5 * time.Second):
		t.Fatal("a second stream waited behind the first one's excess")
	}
	a.Release(held[0])
	a.Release(<-waiting)
	a.Release(held[1])
	if !shared.sem.TryAcquire(8) {
		t.Fatal("shared budget not back to empty")
	}
}

// A cancelled Acquire that took its share but not the shared budget gives
// the share back.
func TestLimiterCancelReleasesShare(t *testing.T) {
	shared, share := NewBudget(4), NewBudget(4)
	other := NewLimiter(1, shared)
	h, _ := other.Acquire(context.Background(), 4)
	l := NewLimiter(1, share, shared)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, ok := l.Acquire(ctx, 4); ok {
		t.Fatal("Acquire succeeded with the shared budget taken")
	}
	if !share.sem.TryAcquire(4) || share.InUse() != 0 || shared.InUse() != 4 {
		t.Fatalf("the cancelled request kept its share (in use: share %d, shared %d)", share.InUse(), shared.InUse())
	}
	other.Release(h)
}

func TestWriteBarrier(t *testing.T) {
	b := NewWriteBarrier()
	w1, w2 := b.Begin(), b.Begin()
	flush := b.Mark()
	w3 := b.Begin() // received after the flush: not waited for
	done := make(chan struct{})
	go func() { b.Wait(flush); close(done) }()
	b.End(w2)
	select {
	case <-done:
		t.Fatal("flush returned with an earlier write still running")
	case <-time.After(20 * time.Millisecond):
	}
	b.End(w1)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("flush did not return after the earlier writes ended")
	}
	b.End(w3)
}

func TestBufferClasses(t *testing.T) {
	const headroom = 16
	p := NewBuffers(headroom, 32<<20, 64<<20)
	for _, n := range []int{1, 4096, 4097, 1 << 20, 1<<20 + 1, 32 << 20} {
		b := p.Get(n)
		if len(*b) != headroom+n {
			t.Errorf("Get(%d): len %d, want %d", n, len(*b), headroom+n)
		}
		// The class must be the smallest that fits, so pooled memory is at
		// most twice the payload.
		if c := cap(*b) - headroom; c < n || c >= 2*n && c > 4096 {
			t.Errorf("Get(%d): capacity %d", n, c)
		}
		p.Put(b)
	}
}

func TestBuffersKeepFreedUpToRetain(t *testing.T) {
	p := NewBuffers(16, 1<<20, 2<<20)
	a, b, c := p.Get(1<<20), p.Get(1<<20), p.Get(1<<20)
	p.Put(a)
	p.Put(b)
	p.Put(c) // over retain: dropped
	if p.retained != 2<<20 {
		t.Fatalf("retained %d bytes, want two buffers", p.retained)
	}
	got := map[*[]byte]bool{p.Get(1 << 20): true, p.Get(1 << 20): true}
	if !got[a] || !got[b] {
		t.Fatal("freed buffers were not reused")
	}
	if p.retained != 0 {
		t.Fatalf("retained %d bytes after taking both back", p.retained)
	}
}

func TestBuffersMakeRoomForTheSizeInUse(t *testing.T) {
	p := NewBuffers(16, 1<<20, 2<<20)
	a, b := p.Get(1<<20), p.Get(1<<20)
	p.Put(a)
	p.Put(b) // the lists are full of 1 MiB buffers
	small := p.Get(4096)
	p.Put(small)
	if got := p.Get(4096); got != small {
		t.Fatal("a 4 KiB buffer was dropped while the lists held only 1 MiB buffers")
	}
	if p.retained != 1<<20 {
		t.Fatalf("retained %d bytes, want one 1 MiB buffer left", p.retained)
	}
	// A size that fills the lists by itself is still bounded.
	c, d := p.Get(1<<20), p.Get(1<<20)
	p.Put(c)
	p.Put(d)
	if p.retained > 2<<20 {
		t.Fatalf("retained %d bytes, over the 2 MiB bound", p.retained)
	}
}

func TestCombinerBatchesAndFails(t *testing.T) {
	var mu sync.Mutex
	var batches [][][]byte
	var released, failed atomic.Int64
	gate := make(chan struct{})
	c := &Combiner{
		Write: func(b [][]byte) error {
			<-gate
			mu.Lock()
			defer mu.Unlock()
			batches = append(batches, b)
			if len(batches) == 3 {
				return errors.New("broken stream")
			}
			return nil
		},
		Fail: func(error) { failed.Add(1) },
	}
	done := func() { released.Add(1) }
	var wg sync.WaitGroup
	wg.Go(func() { c.Send([]byte("first"), done) })
	// While the first write is held, others queue behind it and go out
	// together in the next batch.
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.writing })
	for range 5 {
		c.Send([]byte("queued"), done)
	}
	close(gate)
	wg.Wait()
	mu.Lock()
	if len(batches) != 2 || len(batches[1]) != 5 {
		t.Fatalf("batches %d, second of %d messages; want 2 and 5", len(batches), len(batches[1]))
	}
	mu.Unlock()
	if err := c.Send([]byte("third batch fails"), done); err == nil || failed.Load() != 1 {
		t.Fatalf("failing write: err %v, Fail called %d times", err, failed.Load())
	}
	if err := c.Send([]byte("dropped"), done); err == nil || c.Err() == nil {
		t.Fatal("a send after the failure must report it")
	}
	if released.Load() != 8 {
		t.Fatalf("released %d buffers, want every one of the 8 sent", released.Load())
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}
