//go:build linux

package e2e

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// netCut stands between the guest and objbacker serve, forwarding each TCP
// connection to the server, and cuts the network on demand: every
// connection through it is dropped, and new ones are refused (closed at
// once) until the cut ends.
type netCut struct {
	ln     net.Listener
	target string

	mu       sync.Mutex
	conns    map[net.Conn]bool
	cutUntil time.Time
	refused  int
}

// startNetCut listens on a free loopback port and forwards to target.
func startNetCut(t *testing.T, target string) *netCut {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &netCut{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for c := range p.conns {
			c.Close()
		}
	})
	return p
}

func (p *netCut) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *netCut) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if time.Now().Before(p.cutUntil) {
			p.refused++
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.mu.Unlock()
		go p.forward(c)
	}
}

func (p *netCut) forward(c net.Conn) {
	s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[s] = true, true
	p.mu.Unlock()
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		// Either side closing closes both, as a dropped network would.
		dst.Close()
		src.Close()
	}
	wg.Add(2)
	go pipe(s, c)
	go pipe(c, s)
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, s)
	p.mu.Unlock()
}

// cut drops every connection and refuses new ones for d; it returns how
// many connections it dropped.
func (p *netCut) cut(d time.Duration) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutUntil = time.Now().Add(d)
	for c := range p.conns {
		c.Close()
	}
	return len(p.conns) / 2
}

// refusals is how many connections the cuts refused.
func (p *netCut) refusals() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refused
}
