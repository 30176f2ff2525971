package storetest

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/objbacker/objbacker/objstore"
)

// damagingProxy forwards requests to the server at endpoint and flips one
// byte in the body of the next n uploads after damage(n), where an upload
// is a PUT or POST whose body exceeds 1 KiB: damage in flight, which a
// store must refuse and a driver must report as worth retrying. The Host
// header stays the proxy's, which request signatures cover.
type damagingProxy struct {
	url     string // endpoint's, at the proxy
	pending atomic.Int64
	damaged atomic.Int64
}

// newDamagingProxy starts a proxy that lasts as long as tb.
func newDamagingProxy(tb testing.TB, endpoint string) *damagingProxy {
	tb.Helper()
	p := &damagingProxy{}
	p.url = forward(tb, endpoint, behaviour{request: p.alter})
	return p
}

func (p *damagingProxy) alter(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		return true
	}
	// Read whole: some SDKs send uploads without a length.
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return false
	}
	if len(body) > 1024 && p.pending.Add(-1) >= 0 {
		// The last quarter: past any multipart headers, inside the data.
		body[len(body)*3/4] ^= 0x40
		p.damaged.Add(1)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return true
}

// damage arms the proxy to damage the next n uploads.
func (p *damagingProxy) damage(n int) { p.pending.Store(int64(n)) }

// DamagedUploads checks a driver against damage in flight: a Put through
// a proxy in front of endpoint whose bytes are damaged on the way must be
// refused with a transient error and store nothing, and through Retrying
// it must get through; open opens the driver at either endpoint.
func DamagedUploads(t *testing.T, endpoint string, open Opener) {
	t.Helper()
	proxy := newDamagingProxy(t, endpoint)
	direct, viaProxy := open.At(t, endpoint), open.At(t, proxy.url)
	const key = "vol/damaged"
	data := RandomBytes(64 << 10)
	proxy.damage(1)
	_, err := viaProxy.Put(t.Context(), key, data, objstore.PutOptions{})
	if n := proxy.damaged.Load(); n != 1 {
		t.Fatalf("the proxy damaged %d uploads; want 1", n)
	}
	if err == nil || !objstore.IsTransient(err) {
		t.Fatalf("Put of damaged bytes = %v; want a transient error", err)
	}
	t.Logf("Put of damaged bytes: %v", err)
	if _, err := direct.Stat(t.Context(), key); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("Stat after the refused Put = %v; want ErrNotFound", err)
	}
	proxy.damage(2)
	policy := objstore.RetryPolicy{Attempts: 4, BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond}
	MustPut(t, objstore.Retrying(viaProxy, policy, nil), key, data, objstore.PutOptions{})
	if got, _ := MustGet(t, direct, key, 0, -1); !bytes.Equal(got, data) {
		t.Fatalf("after a retried Put: %s", differ(got, data))
	}
}
