package attach

import (
	"math/rand/v2"
	"time"
)

// Backoff spaces out reconnect attempts: each delay doubles from Min up to
// Max, and is spread by a random ±Jitter fraction so that the devices of a
// host that lost the same server do not all dial it at the same instant.
type Backoff struct {
	Min, Max time.Duration
	Jitter   float64 // 0..1
	// Rand returns a float in [0, 1); nil uses math/rand/v2.
	Rand func() float64

	next time.Duration
}

// Next returns the delay before the next attempt.
func (b *Backoff) Next() time.Duration {
	if b.next == 0 {
		b.next = b.Min
	}
	d := b.next
	b.next = min(2*b.next, b.Max)
	r := b.Rand
	if r == nil {
		r = rand.Float64
	}
	j := time.Duration((2*r() - 1) * b.Jitter * float64(d))
	return max(0, min(d+j, b.Max))
}

// Reset starts again from Min, after a success.
func (b *Backoff) Reset() { b.next = 0 }
