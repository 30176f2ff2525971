package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// progress reports a long operation on stderr: a redrawn bar on a terminal,
// a line every few seconds otherwise (logs, CI).
type progress struct {
	w        io.Writer
	what     string
	total    int64
	done     atomic.Int64
	start    time.Time
	terminal bool
	stop     chan struct{}
	stopped  chan struct{}
}

func startProgress(w io.Writer, what string, total int64) *progress {
	p := &progress{w: w, what: what, total: total, start: time.Now(), stop: make(chan struct{}), stopped: make(chan struct{})}
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
	frac := 1.0
	if p.total > 0 {
		frac = float64(done) / float64(p.total)
	}
	rate := float64(done) / max(elapsed.Seconds(), 0.001)
	line := fmt.Sprintf("%s %d/%d (%.0f%%, %.0f/s, %s)", p.what, done, p.total, 100*frac, rate, elapsed.Round(time.Second))
	switch {
	case p.terminal:
		const width = 30
		bar := strings.Repeat("#", int(frac*width)) + strings.Repeat(".", width-int(frac*width))
		end := ""
		if final {
			end = "\n"
		}
		fmt.Fprintf(p.w, "\r[%s] %s%s", bar, line, end)
	default:
		fmt.Fprintln(p.w, line)
	}
}
