package main

import (
	"context"
	"time"
)

// DefaultStopTimeout is how long a stopping daemon waits for its final
// flush to make progress.
const DefaultStopTimeout = time.Minute

// watchStop gives up the final flush of a stopping daemon once no block has
// reached the store for timeout (0: never): a store that keeps failing
// would otherwise hold the process for as long as every dirty block's
// retries take, minutes for a large cache. A flush that progresses, however
// slowly, is left to finish. It starts watching when ctx ends; call the
// returned function once the exports are closed.
func (s *exportSet) watchStop(ctx context.Context, timeout time.Duration) (closed func()) {
	finished := make(chan struct{})
	if timeout <= 0 {
		return func() {}
	}
	go func() {
		select {
		case <-ctx.Done():
		case <-finished:
			return
		}
		tick := time.NewTicker(min(timeout/4, time.Second))
		defer tick.Stop()
		last, since := s.stored(), time.Now()
		for {
			select {
			case <-finished:
				return
			case now := <-tick.C:
				if n := s.stored(); n != last {
					last, since = n, now
					continue
				}
				if now.Sub(since) < timeout {
					continue
				}
				s.log.Error("giving up the final flush: no block reached the store", "for", timeout)
				for _, e := range s.opened {
					e.device.Abort()
				}
				return
			}
		}
	}()
	return func() { close(finished) }
}

// stored counts the blocks uploaded or deleted by every export so far.
func (s *exportSet) stored() (n int64) {
	for _, e := range s.opened {
		st := e.device.Stats()
		n += st.Puts + st.Deletes
	}
	return n
}
