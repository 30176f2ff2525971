package nbd

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestByteBudgetNeverOvercommits(t *testing.T) {
	b := newByteBudget(10 << 20)
	var inUse, peak atomic.Int64
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 200 {
				n := int64(r.IntN(4<<20) + 1)
				if !b.acquire(context.Background(), n) {
					t.Error("acquire failed without cancellation")
					return
				}
				now := inUse.Add(n)
				for p := peak.Load(); now > p && !peak.CompareAndSwap(p, now); p = peak.Load() {
				}
				inUse.Add(-n)
				b.release(n)
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > 10<<20 {
		t.Fatalf("%d bytes held at once in a budget of %d", p, 10<<20)
	}
	if b.used != 0 || b.waiters.Len() != 0 {
		t.Fatalf("budget not back to empty: used %d, %d waiters", b.used, b.waiters.Len())
	}
}

func TestByteBudgetOrderAndCancel(t *testing.T) {
	b := newByteBudget(8)
	ctx := context.Background()
	b.acquire(ctx, 6)
	// A large waiter is first in line; a small one behind it must not
	// overtake it, or large requests could starve.
	large := make(chan bool)
	go func() { large <- b.acquire(ctx, 8) }()
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.waiters.Len() == 1 })
	small := make(chan bool)
	go func() { small <- b.acquire(ctx, 1) }()
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.waiters.Len() == 2 })

	// Cancelling a waiter in the middle leaves the others queued.
	cctx, cancel := context.WithCancel(ctx)
	cancelled := make(chan bool)
	go func() { cancelled <- b.acquire(cctx, 2) }()
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.waiters.Len() == 3 })
	cancel()
	if <-cancelled {
		t.Fatal("a cancelled acquire succeeded")
	}

	b.release(6)
	if !<-large {
		t.Fatal("large request failed")
	}
	select {
	case <-small:
		t.Fatal("small request ran while the large one held the whole budget")
	case <-time.After(20 * time.Millisecond):
	}
	b.release(8)
	if !<-small {
		t.Fatal("small request failed")
	}
	b.release(1)
	// Requests beyond the budget take all of it rather than wait forever.
	if !b.acquire(ctx, 100) || b.used != 8 {
		t.Fatalf("oversized request: used %d", b.used)
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
