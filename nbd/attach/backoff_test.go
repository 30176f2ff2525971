package attach

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	r := 0.5 // no jitter
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second, Jitter: 0.3, Rand: func() float64 { return r }}
	var got []time.Duration
	for range 7 {
		got = append(got, b.Next())
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("delays %v, want %v ms: doubling, capped", got, want)
		}
	}
	b.Reset()
	if d := b.Next(); d != 100*time.Millisecond {
		t.Fatalf("after Reset: %v, want the minimum", d)
	}
	// Jitter spreads by at most ±30 %, and never past the cap.
	b.Reset()
	r = 0
	if d := b.Next(); d != 70*time.Millisecond {
		t.Errorf("lowest jitter: %v, want 70ms", d)
	}
	r = 0.999999
	b.Reset()
	for range 10 {
		if d := b.Next(); d > time.Second {
			t.Errorf("delay %v past the 1s cap", d)
		}
	}
	if d := b.Next(); d < 999*time.Millisecond {
		t.Errorf("highest jitter at the cap: %v", d)
	}
}
