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

// DamagingProxy forwards requests to the server at endpoint and flips one
// byte in the body of the next n uploads after Damage(n), where an upload
// is a PUT or POST whose body exceeds 1 KiB: damage in flight, which a
// store must refuse and a driver must report as worth retrying. The Host
// header stays the proxy's, which request signatures cover.
type DamagingProxy struct {
	URL     string // endpoint's, at the proxy
	pending atomic.Int64
	damaged atomic.Int64
}

// NewDamagingProxy starts a proxy that lasts as long as tb.
func NewDamagingProxy(tb testing.TB, endpoint string) *DamagingProxy {
	tb.Helper()
	p := &DamagingProxy{}
	p.URL = forward(tb, endpoint, behaviour{request: p.alter})
	return p
}

func (p *DamagingProxy) alter(w http.ResponseWriter, r *http.Request) bool {
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

// Damage arms the proxy to damage the next n uploads.
func (p *DamagingProxy) Damage(n int) { p.pending.Store(int64(n)) }

// Damaged is how many uploads the proxy has damaged.
func (p *DamagingProxy) Damaged() int { return int(p.damaged.Load()) }

// DamagedUploads checks a driver against damage in flight: a Put through
// proxy (viaProxy is the driver opened on proxy.URL) whose bytes are
// damaged on the way must be refused with a transient error and store
// nothing, and through Retrying it must get through; direct reads the
// store without the proxy.
func DamagedUploads(t *testing.T, proxy *DamagingProxy, viaProxy, direct objstore.Store) {
	t.Helper()
	const key = "vol/damaged"
	data := RandomBytes(64 << 10)
	proxy.Damage(1)
	_, err := viaProxy.Put(t.Context(), key, data, objstore.PutOptions{})
	if proxy.Damaged() != 1 {
		t.Fatalf("the proxy damaged %d uploads; want 1", proxy.Damaged())
	}
	if err == nil || !objstore.IsTransient(err) {
		t.Fatalf("Put of damaged bytes = %v; want a transient error", err)
	}
	t.Logf("Put of damaged bytes: %v", err)
	if _, err := direct.Stat(t.Context(), key); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("Stat after the refused Put = %v; want ErrNotFound", err)
	}
	proxy.Damage(2)
	policy := objstore.RetryPolicy{Attempts: 4, BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond}
	MustPut(t, objstore.Retrying(viaProxy, policy, nil), key, data, objstore.PutOptions{})
	if got, _ := MustGet(t, direct, key, 0, -1); !bytes.Equal(got, data) {
		t.Fatalf("after a retried Put: %s", differ(got, data))
	}
}
