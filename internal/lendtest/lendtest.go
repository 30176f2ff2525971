// Package lendtest is a test double for the Lender interfaces of the nbd
// and kernel servers: it lends copies, in two views each, and counts the
// loans not yet released.
package lendtest

import (
	"sync"
	"testing"
	"time"
)

// Lender lends the bytes Read returns; with Fail set, every LendAt fails.
type Lender struct {
	Read func(off, n int64) []byte
	Fail error

	mu          sync.Mutex
	lends, open int
}

func (l *Lender) LendAt(off, n int64, views [][]byte) ([][]byte, func(), error) {
	if l.Fail != nil {
		return nil, nil, l.Fail
	}
	data := l.Read(off, n)
	l.mu.Lock()
	l.lends++
	l.open++
	l.mu.Unlock()
	var once sync.Once
	return append(views, data[:n/2], data[n/2:]), func() {
		once.Do(func() {
			l.mu.Lock()
			l.open--
			l.mu.Unlock()
		})
	}, nil
}

// WaitReleased fails t unless, within a few seconds, there were want loans
// and every one was released: a server releases a loan only once the
// reply is sent, which may be after the client has read it.
func (l *Lender) WaitReleased(t testing.TB, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.mu.Lock()
		lends, open := l.lends, l.open
		l.mu.Unlock()
		if lends == want && open == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d loans, %d not released after their replies were sent; want %d, 0", lends, open, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
