package storetest

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/objbacker/objbacker/objstore"
)

// CuttingProxy forwards requests to the server at endpoint and drops the
// connection part-way through every other GET body of more than 4 KiB (an
// object's, not a listing's), at a random point: a store whose connections
// reset mid-body on half the reads.
type CuttingProxy struct {
	URL  string // endpoint's, at the proxy
	gets atomic.Int64
	cuts atomic.Int64
}

// NewCuttingProxy starts a proxy that lasts as long as tb. serverHost
// sends requests with the server's Host header, which fake-gcs-server tells
// its APIs apart by; signed requests (S3's) need the proxy's own.
func NewCuttingProxy(tb testing.TB, endpoint string, serverHost bool) *CuttingProxy {
	tb.Helper()
	p := &CuttingProxy{}
	// quiet: the proxy logs a line per cut.
	p.URL = forward(tb, endpoint, behaviour{serverHost: serverHost, response: p.cut, quiet: true})
	return p
}

func (p *CuttingProxy) cut(r *http.Response) error {
	if r.Request.Method == http.MethodGet && r.StatusCode/100 == 2 && r.ContentLength > 4096 && p.gets.Add(1)%2 == 1 {
		// The proxy aborts the connection when copying the body fails.
		r.Body = &cutBody{ReadCloser: r.Body, left: rand.Int64N(r.ContentLength)}
		p.cuts.Add(1)
	}
	return nil
}

// Cuts is how many bodies the proxy has cut.
func (p *CuttingProxy) Cuts() int { return int(p.cuts.Load()) }

type cutBody struct {
	io.ReadCloser
	left int64
}

func (r *cutBody) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, errors.New("cut by the proxy")
	}
	n, err := r.ReadCloser.Read(p[:min(int64(len(p)), r.left)])
	r.left -= int64(n)
	return n, err
}

// ResumedBlockReads checks a driver against connections reset mid-body:
// ResumedReads of an object it stores through a CuttingProxy in front of
// endpoint (serverHost as for NewCuttingProxy).
func ResumedBlockReads(t *testing.T, endpoint string, serverHost bool, open Opener) {
	t.Helper()
	proxy := NewCuttingProxy(t, endpoint, serverHost)
	viaProxy := open.At(t, proxy.URL)
	data := RandomBytes(1 << 20)
	MustPut(t, viaProxy, "block", data, objstore.PutOptions{})
	ResumedReads(t, proxy, viaProxy, "block", data)
}

// ResumedReads checks that reads of key, which holds data, through
// Retrying over viaProxy, a driver opened on proxy, deliver the object's
// bytes exactly, whole (which the driver checks against the store's
// checksum) and in ranges.
func ResumedReads(t *testing.T, proxy *CuttingProxy, viaProxy objstore.Store, key string, data []byte) {
	t.Helper()
	store := objstore.Retrying(viaProxy, objstore.RetryPolicy{Attempts: 6, BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond}, nil)
	before := proxy.Cuts()
	for _, r := range []struct{ off, n int64 }{{0, -1}, {0, -1}, {0, -1}, {0, -1}, {0, -1}, {0, -1}, {1000, -1}, {4096, 100000}} {
		got, _ := MustGet(t, store, key, r.off, r.n)
		if want := window(data, r.off, r.n); !bytes.Equal(got, want) {
			t.Fatalf("%s: Get(%d, %d): %s", key, r.off, r.n, differ(got, want))
		}
	}
	if proxy.Cuts() == before {
		t.Fatalf("%s: the proxy cut no body", key)
	}
}
