package faultproxy

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeStore answers like a tiny S3 bucket "b": one object, a listing of
// three keys, and PUTs it remembers.
type fakeStore struct {
	mu    sync.Mutex
	puts  [][]byte
	hosts []string
}

var object = bytes.Repeat([]byte("0123456789abcdef"), 64)

const listing = `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Contents><Key>vol/00000000</Key></Contents><Contents><Key>vol/00000001</Key></Contents><Contents><Key>vol/00000002</Key></Contents></ListBucketResult>`

func (s *fakeStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.hosts = append(s.hosts, r.Host)
	s.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/b/vol/00000000":
		w.Write(object)
	case r.Method == http.MethodHead && r.URL.Path == "/b/vol/00000000":
		w.Header().Set("Content-Length", strconv.Itoa(len(object)))
	case r.Method == http.MethodGet && r.URL.Query().Has("list-type"):
		io.WriteString(w, listing)
	case r.Method == http.MethodPut:
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.puts = append(s.puts, body)
		s.mu.Unlock()
	default:
		http.NotFound(w, r)
	}
}

// seen returns copies of the PUT bodies and Host headers received so far.
func (s *fakeStore) seen() (puts [][]byte, hosts []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.puts...), append([]string(nil), s.hosts...)
}

func (s *fakeStore) putCount() int {
	puts, _ := s.seen()
	return len(puts)
}

func start(t *testing.T, f Faults) (*Proxy, *fakeStore) {
	t.Helper()
	store := &fakeStore{}
	upstream := httptest.NewServer(store)
	t.Cleanup(upstream.Close)
	p, err := Start(upstream.URL, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	p.SetFaults(f)
	return p, store
}

// client keeps no connection between requests, so that a reset of one
// cannot be mistaken for a stale pooled connection.
var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}, Timeout: 10 * time.Second}

func get(p *Proxy, path string) (int, []byte, error) {
	resp, err := client.Get(p.URL() + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

func put(p *Proxy, body []byte) (int, error) {
	req, _ := http.NewRequest(http.MethodPut, p.URL()+"/b/vol/00000001", bytes.NewReader(body))
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func TestNoFaultsForwardsUnchangedWithTheClientsHost(t *testing.T) {
	p, store := start(t, Faults{})
	code, body, err := get(p, "/b/vol/00000000")
	if err != nil || code != 200 || !bytes.Equal(body, object) {
		t.Fatalf("GET through the proxy: %d, %d bytes, %v; want 200 and the object", code, len(body), err)
	}
	_, err = put(p, object)
	puts, hosts := store.seen()
	if err != nil || len(puts) != 1 || !bytes.Equal(puts[0], object) {
		t.Fatalf("PUT through the proxy: %v, store got %d PUTs", err, len(puts))
	}
	host := strings.TrimPrefix(p.URL(), "http://")
	if hosts[0] != host {
		t.Errorf("store saw Host %q, want the proxy's %q (the client signed it)", hosts[0], host)
	}
}

func TestHeadKeepsTheObjectsLength(t *testing.T) {
	p, _ := start(t, Faults{})
	resp, err := client.Head(p.URL() + "/b/vol/00000000")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ContentLength != int64(len(object)) {
		t.Errorf("HEAD through the proxy: Content-Length %d, want %d", resp.ContentLength, len(object))
	}
}

func TestStatusErrors(t *testing.T) {
	for _, tc := range []struct {
		f    Faults
		code int
	}{{Faults{Status503: 1}, 503}, {Faults{Status500: 1}, 500}} {
		p, store := start(t, tc.f)
		code, body, err := get(p, "/b/vol/00000000")
		if err != nil || code != tc.code || !bytes.Contains(body, []byte("<Error>")) {
			t.Errorf("%+v: got %d %q %v, want %d with an S3 error body", tc.f, code, body, err, tc.code)
		}
		if _, hosts := store.seen(); len(hosts) != 0 {
			t.Errorf("%+v: the store saw the request", tc.f)
		}
	}
}

func TestCorruptGetFlipsOneByte(t *testing.T) {
	p, _ := start(t, Faults{CorruptGet: 1})
	_, body, err := get(p, "/b/vol/00000000")
	if err != nil || len(body) != len(object) {
		t.Fatalf("GET: %d bytes, %v", len(body), err)
	}
	if n := differing(body, object); n != 1 {
		t.Errorf("%d bytes differ, want 1", n)
	}
	if p.Stats().CorruptGets != 1 {
		t.Errorf("stats: %v", p.Stats())
	}
}

func TestCorruptPutFlipsOneByteTheStoreSees(t *testing.T) {
	p, store := start(t, Faults{CorruptPut: 1})
	if _, err := put(p, object); err != nil {
		t.Fatal(err)
	}
	if puts, _ := store.seen(); len(puts) != 1 || differing(puts[0], object) != 1 {
		t.Errorf("the store got %d PUTs; want one with exactly one byte changed", len(puts))
	}
}

func TestCorruptListChangesOneKeyAndStaysXML(t *testing.T) {
	p, _ := start(t, Faults{CorruptList: 1})
	_, body, err := get(p, "/b?list-type=2&prefix=vol/")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Keys []string `xml:"Contents>Key"`
	}
	if err := xml.Unmarshal(body, &got); err != nil {
		t.Fatalf("corrupted listing is no longer XML: %v\n%s", err, body)
	}
	want := []string{"vol/00000000", "vol/00000001", "vol/00000002"}
	changed := 0
	for i, k := range got.Keys {
		if k != want[i] {
			changed++
			if len(k) != len(want[i]) || differing([]byte(k), []byte(want[i])) != 1 {
				t.Errorf("key %q: want one character of %q changed", k, want[i])
			}
		}
	}
	if len(got.Keys) != 3 || changed != 1 {
		t.Errorf("keys %q: want exactly one of %q changed", got.Keys, want)
	}
}

func TestResetCutsTheBody(t *testing.T) {
	p, store := start(t, Faults{Reset: 1})
	code, body, err := get(p, "/b/vol/00000000")
	if err == nil || code != 200 || len(body) >= len(object) {
		t.Errorf("GET: %d, %d bytes, %v; want 200 and a body cut short by an error", code, len(body), err)
	}
	if _, err := put(p, object); err == nil {
		t.Error("PUT with its body cut: no error")
	}
	if store.putCount() != 0 {
		t.Error("the store got a PUT whose body was cut")
	}
}

func TestLoseResponseCarriesTheRequestOut(t *testing.T) {
	p, store := start(t, Faults{LoseResponse: 1})
	if _, err := put(p, object); err == nil {
		t.Error("PUT whose answer was dropped: no error")
	}
	if store.putCount() != 1 {
		t.Errorf("the store got %d PUTs, want 1: the request goes through, only the answer is lost", store.putCount())
	}
}

func TestStallDelaysTheBody(t *testing.T) {
	p, _ := start(t, Faults{Stall: 1, StallFor: 300 * time.Millisecond})
	begin := time.Now()
	_, body, err := get(p, "/b/vol/00000000")
	if err != nil || !bytes.Equal(body, object) {
		t.Fatalf("stalled GET: %d bytes, %v; want the whole object", len(body), err)
	}
	if d := time.Since(begin); d < 300*time.Millisecond {
		t.Errorf("stalled GET took %v, want at least 300ms", d)
	}
}

func TestDownRefusesAndComesBack(t *testing.T) {
	p, _ := start(t, Faults{})
	if err := p.SetDown(true); err != nil {
		t.Fatal(err)
	}
	_, _, err := get(p, "/b/vol/00000000")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("GET while down: %v, want connection refused", err)
	}
	if err := p.SetDown(false); err != nil {
		t.Fatal(err)
	}
	if code, _, err := get(p, "/b/vol/00000000"); err != nil || code != 200 {
		t.Errorf("GET after coming back: %d, %v", code, err)
	}
}

func TestSetFaultsAtRunTime(t *testing.T) {
	p, _ := start(t, Faults{Status503: 1})
	if code, _, _ := get(p, "/b/vol/00000000"); code != 503 {
		t.Fatalf("got %d, want 503", code)
	}
	p.SetFaults(Faults{})
	if code, _, _ := get(p, "/b/vol/00000000"); code != 200 {
		t.Fatalf("after clearing the faults: %d, want 200", code)
	}
}

func differing(a, b []byte) int {
	n := 0
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			n++
		}
	}
	return n + max(len(a), len(b)) - min(len(a), len(b))
}
