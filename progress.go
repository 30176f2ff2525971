package main

import (
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"
)

// progress reports a long operation whose size is not known in advance
// (it is found out as the work goes): a redrawn count on a terminal, a line
// every few seconds otherwise (logs, CI).
type progress struct {
	w        io.Writer
	what     string
	done     atomic.Int64
	start    time.Time
	terminal bool
	stop     chan struct{}
	stopped  chan struct{}
}

func startProgress(w io.Writer, what string) *progress {
	p := &progress{w: w, what: what, start: time.Now(), stop: make(chan struct{}), stopped: make(chan struct{})}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	interval := 5 * time.Second
	if p.terminal {
		interval = 200 * time.Millisecond
	}
	go func() {
		defer close(p.stopped)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				p.draw(true)
				return
			case <-t.C:
				p.draw(false)
			}
		}
	}()
	return p
}

func (p *progress) add(n int64) { p.done.Add(n) }

// finish draws the final state once.
func (p *progress) finish() {
	close(p.stop)
	<-p.stopped
}

func (p *progress) draw(final bool) {
	done, elapsed := p.done.Load(), time.Since(p.start)
	rate := float64(done) / max(elapsed.Seconds(), 0.001)
	line := fmt.Sprintf("%s: %d (%.0f/s, %s)", p.what, done, rate, elapsed.Round(time.Second))
	switch {
	case p.terminal:
		end := ""
		if final {
			end = "\n"
		}
		fmt.Fprintf(p.w, "\r%s%s", line, end)
	default:
		fmt.Fprintln(p.w, line)
	}
}
