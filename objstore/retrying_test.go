package objstore_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/internal/rangeread"
	"github.com/objbacker/objbacker/objstore/memstore"
	"github.com/objbacker/objbacker/objstore/storetest"
)

// tiny keeps retries fast enough for tests.
var tiny = objstore.RetryPolicy{Attempts: 4, BaseDelay: time.Microsecond, MaxDelay: 8 * time.Microsecond}

var errBoom = errors.New("boom")

// flaky is a memstore whose next calls fail with err.
type flaky struct {
	objstore.Store
	mu       sync.Mutex
	calls    map[string]int
	failures int      // how many calls still fail
	err      error    // what they fail with
	listCut  int      // entries a failing List delivers before failing
	onFail   func()   // runs at each failure
	listFrom []string // the startAfter of each List
}

func newFlaky(failures int, err error) *flaky {
	return &flaky{Store: memstore.New(), calls: map[string]int{}, failures: failures, err: err}
}

func (f *flaky) fail(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	if f.failures == 0 {
		return nil
	}
	f.failures--
	if f.onFail != nil {
		f.onFail()
	}
	return f.err
}

func (f *flaky) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *flaky) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, objstore.Attrs, error) {
	if err := f.fail("get"); err != nil {
		return nil, objstore.Attrs{}, err
	}
	return f.Store.Get(ctx, key, off, n)
}

func (f *flaky) Put(ctx context.Context, key string, data []byte, opts objstore.PutOptions) (objstore.Attrs, error) {
	if err := f.fail("put"); err != nil {
		return objstore.Attrs{}, err
	}
	return f.Store.Put(ctx, key, data, opts)
}

func (f *flaky) Delete(ctx context.Context, key string) error {
	if err := f.fail("delete"); err != nil {
		return err
	}
	return f.Store.Delete(ctx, key)
}

func (f *flaky) Stat(ctx context.Context, key string) (objstore.Attrs, error) {
	if err := f.fail("stat"); err != nil {
		return objstore.Attrs{}, err
	}
	return f.Store.Stat(ctx, key)
}

func (f *flaky) List(ctx context.Context, prefix, startAfter string, fn func(objstore.ObjectInfo) error) error {
	f.mu.Lock()
	f.listFrom = append(f.listFrom, startAfter)
	f.mu.Unlock()
	failure := f.fail("list")
	if failure == nil {
		return f.Store.List(ctx, prefix, startAfter, fn)
	}
	delivered := 0
	err := f.Store.List(ctx, prefix, startAfter, func(info objstore.ObjectInfo) error {
		if delivered == f.listCut {
			return failure
		}
		delivered++
		return fn(info)
	})
	if err == nil {
		err = failure
	}
	return err
}

// logged returns a logger and a function decoding what it has logged.
func logged(t *testing.T) (*slog.Logger, func() []map[string]any) {
	var mu sync.Mutex
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &buf}, nil))
	return log, func() []map[string]any {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		var records []map[string]any
		for line := range strings.Lines(buf.String()) {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			records = append(records, rec)
		}
		return records
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func TestRetryingConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) objstore.Store { return objstore.Retrying(memstore.New(), tiny, nil) })
}

// ops exercises each Store method once against a store holding "k".
var ops = []struct {
	name string
	call func(ctx context.Context, s objstore.Store) error
}{
	{"get", func(ctx context.Context, s objstore.Store) error {
		rc, _, err := s.Get(ctx, "k", 0, -1)
		if err != nil {
			return err
		}
		defer rc.Close()
		data, err := io.ReadAll(rc)
		if err == nil && string(data) != "value" {
			err = fmt.Errorf("read %q, want %q", data, "value")
		}
		return err
	}},
	{"put", func(ctx context.Context, s objstore.Store) error {
		_, err := s.Put(ctx, "k", []byte("value"), objstore.PutOptions{})
		return err
	}},
	{"stat", func(ctx context.Context, s objstore.Store) error {
		_, err := s.Stat(ctx, "k")
		return err
	}},
	{"delete", func(ctx context.Context, s objstore.Store) error { return s.Delete(ctx, "k") }},
	{"list", func(ctx context.Context, s objstore.Store) error {
		return s.List(ctx, "k", "", func(objstore.ObjectInfo) error { return nil })
	}},
}

func prepared(t *testing.T, failures int, err error) *flaky {
	f := newFlaky(0, nil)
	storetest.MustPut(t, f.Store, "k", []byte("value"), objstore.PutOptions{})
	f.failures, f.err = failures, err
	return f
}

func TestRetryingRecoversFromTransientErrors(t *testing.T) {
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			f := prepared(t, 2, objstore.Transient(errBoom))
			log, records := logged(t)
			if err := op.call(t.Context(), objstore.Retrying(f, tiny, log)); err != nil {
				t.Fatalf("%s after two transient failures: %v", op.name, err)
			}
			if got := f.count(op.name); got != 3 {
				t.Errorf("%d calls reached the store; want 3", got)
			}
			recs := records()
			if len(recs) != 2 {
				t.Fatalf("logged %d records; want one per retry (2)", len(recs))
			}
			for i, rec := range recs {
				if rec["level"] != "WARN" || rec["op"] != op.name || rec["key"] != "k" ||
					rec["attempt"] != float64(i+1) || !strings.Contains(fmt.Sprint(rec["err"]), "boom") {
					t.Errorf("retry log %d = %v; want WARN with op %s, key k, attempt %d and the error", i, rec, op.name, i+1)
				}
			}
		})
	}
}

func TestRetryingGivesUp(t *testing.T) {
	for _, op := range ops {
		f := prepared(t, 100, objstore.Transient(errBoom))
		err := op.call(t.Context(), objstore.Retrying(f, tiny, nil))
		if !errors.Is(err, errBoom) || !objstore.IsTransient(err) {
			t.Errorf("%s = %v; want the last transient error", op.name, err)
		}
		if got := f.count(op.name); got != tiny.Attempts {
			t.Errorf("%s: %d calls; want %d", op.name, got, tiny.Attempts)
		}
	}
}

func TestRetryingPassesOtherErrorsAtOnce(t *testing.T) {
	for _, failure := range []error{objstore.ErrNotFound, objstore.ErrPreconditionFailed, objstore.ErrAccessDenied, errBoom} {
		for _, op := range ops {
			f := prepared(t, 1, failure)
			log, records := logged(t)
			if err := op.call(t.Context(), objstore.Retrying(f, tiny, log)); !errors.Is(err, failure) {
				t.Errorf("%s failing with %v returned %v", op.name, failure, err)
			}
			if got, recs := f.count(op.name), records(); got != 1 || len(recs) != 0 {
				t.Errorf("%s failing with %v: %d calls, %d retry logs; want 1 and none", op.name, failure, got, len(recs))
			}
		}
	}
}

func TestRetryingLeavesConditionalPutsToTheCaller(t *testing.T) {
	for _, opts := range []objstore.PutOptions{{IfNoneMatch: true}, {IfMatch: "0123456789abcdef"}} {
		f := newFlaky(1, objstore.Transient(errBoom))
		if _, err := objstore.Retrying(f, tiny, nil).Put(t.Context(), "k", []byte("v"), opts); !objstore.IsTransient(err) {
			t.Errorf("conditional Put %+v = %v; want the transient error", opts, err)
		}
		if got := f.count("put"); got != 1 {
			t.Errorf("conditional Put %+v: %d calls; want 1", opts, got)
		}
	}
}

func TestRetryingStopsWhenContextEnds(t *testing.T) {
	slow := objstore.RetryPolicy{Attempts: 1000, BaseDelay: time.Hour, MaxDelay: time.Hour}

	// Cancelled while the call fails: no wait at all.
	f := newFlaky(1000, objstore.Transient(errBoom))
	ctx, cancel := context.WithCancel(t.Context())
	f.onFail = cancel
	_, err := objstore.Retrying(f, slow, nil).Stat(ctx, "k")
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "boom") || objstore.IsTransient(err) {
		t.Errorf("Stat = %v; want context.Canceled naming the last error, not transient", err)
	}
	if got := f.count("stat"); got != 1 {
		t.Errorf("%d calls after cancellation; want 1", got)
	}

	// Deadline reached during an hour-long backoff.
	f = newFlaky(1000, objstore.Transient(errBoom))
	ctx, cancel = context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = objstore.Retrying(f, slow, nil).Stat(ctx, "k")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "boom") {
		t.Errorf("Stat = %v; want context.DeadlineExceeded naming the last error", err)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("Stat returned %v after its deadline", elapsed)
	}
}

// TestRetryingBackoff reads the waits from the retry logs: each must lie
// within the exponential bound, including past the shift that would
// overflow, and the jitter must spread them below it.
func TestRetryingBackoff(t *testing.T) {
	const base, maxDelay = time.Microsecond, 16 * time.Microsecond
	var capped []time.Duration // waits whose bound is maxDelay
	check := func(attempts int) {
		t.Helper()
		f := prepared(t, attempts-1, objstore.Transient(errBoom))
		log, records := logged(t)
		policy := objstore.RetryPolicy{Attempts: attempts, BaseDelay: base, MaxDelay: maxDelay}
		if _, err := objstore.Retrying(f, policy, log).Stat(t.Context(), "k"); err != nil {
			t.Fatalf("Stat after %d failures: %v", attempts-1, err)
		}
		recs := records()
		if len(recs) != attempts-1 {
			t.Fatalf("logged %d retries; want %d", len(recs), attempts-1)
		}
		for i, rec := range recs {
			delay := time.Duration(rec["delay"].(float64))
			bound := maxDelay
			if i < 4 {
				bound = base << i
			}
			if delay < 0 || delay > bound {
				t.Errorf("wait before retry %d = %v; want within [0, %v]", i+1, delay, bound)
			}
			if bound == maxDelay {
				capped = append(capped, delay)
			}
		}
	}
	check(70)
	for range 20 {
		check(12)
	}
	if slices.Max(capped) <= maxDelay/2 || slices.Min(capped) == maxDelay {
		t.Errorf("%d waits bounded by %v spread only over [%v, %v]; want full jitter", len(capped), maxDelay, slices.Min(capped), slices.Max(capped))
	}
}

func TestRetryingListResumesAfterDeliveredKeys(t *testing.T) {
	f := newFlaky(0, nil)
	keys := []string{"a/1", "a/2", "a/3", "a/4", "a/5"}
	for _, key := range keys {
		storetest.MustPut(t, f.Store, key, []byte(key), objstore.PutOptions{})
	}
	f.failures, f.err, f.listCut = 1, objstore.Transient(errBoom), 2
	var seen []string
	err := objstore.Retrying(f, tiny, nil).List(t.Context(), "a/", "", func(info objstore.ObjectInfo) error {
		seen = append(seen, info.Key)
		return nil
	})
	if err != nil || !slices.Equal(seen, keys) {
		t.Errorf("List = %v, delivering %q; want each of %q once", err, seen, keys)
	}
	if want := []string{"", "a/2"}; !slices.Equal(f.listFrom, want) {
		t.Errorf("listings started after %q; want %q", f.listFrom, want)
	}
}

func TestRetryingNeverRetriesListCallbackErrors(t *testing.T) {
	f := prepared(t, 0, nil)
	callbackErr := objstore.Transient(errBoom)
	err := objstore.Retrying(f, tiny, nil).List(t.Context(), "", "", func(objstore.ObjectInfo) error { return callbackErr })
	if err != callbackErr {
		t.Errorf("List = %v; want the callback's error itself", err)
	}
	if got := f.count("list"); got != 1 {
		t.Errorf("%d listings; want 1", got)
	}
}

// scriptedListing lists keys in the order given, however wrong, as a store
// with its own idea of key order would: a listing that starts after a key
// it holds goes on from that key's place in its order, and one that starts
// after another key lists the keys greater than it. Its attempt-th listing
// (0 first) fails after delivering cuts[attempt] keys; attempts beyond cuts
// list to the end. from records the startAfter of each listing.
type scriptedListing struct {
	objstore.Store
	keys     []string
	cuts     []int
	attempts int
	from     []string
}

func (s *scriptedListing) List(_ context.Context, _, startAfter string, fn func(objstore.ObjectInfo) error) error {
	attempt := s.attempts
	s.attempts++
	s.from = append(s.from, startAfter)
	keys := s.keys
	if i := slices.Index(keys, startAfter); i >= 0 {
		keys = keys[i+1:]
	} else {
		keys = slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return k <= startAfter })
	}
	for i, key := range keys {
		if attempt < len(s.cuts) && i == s.cuts[attempt] {
			return objstore.Transient(errBoom)
		}
		if err := fn(objstore.ObjectInfo{Key: key}); err != nil {
			return err
		}
	}
	if attempt < len(s.cuts) && len(keys) == s.cuts[attempt] {
		return objstore.Transient(errBoom)
	}
	return nil
}

// TestRetryingListNeverSkipsUndeliveredKeys: a listing out of order or with
// a damaged key, with or without failures part-way, still delivers every
// key at least once, and says when the store listed out of order.
func TestRetryingListNeverSkipsUndeliveredKeys(t *testing.T) {
	ascending := []string{"b/1", "b/2", "b/3", "b/4", "b/5", "b/6"}
	// "b/3" with a byte flipped in flight sorts after every other key.
	damaged := []string{"b/1", "b/2", "b/s", "b/4", "b/5", "b/6"}
	swapped := []string{"b/1", "b/2", "b/4", "b/3", "b/5", "b/6"}
	for _, tc := range []struct {
		name       string
		keys       []string
		cuts       []int
		outOfOrder bool
		exactlyOne bool     // each key delivered once
		from       []string // the startAfter of each listing
	}{
		{"ascending, no failure", ascending, nil, false, true, []string{""}},
		{"ascending, failure part-way", ascending, []int{3}, false, true, []string{"", "b/3"}},
		{"ascending, failures before any key", ascending, []int{0, 0}, false, true, []string{"", "", ""}},
		{"ascending, failures at the same key", ascending, []int{2, 0, 0}, false, true, []string{"", "b/2", "b/2", "b/2"}},
		{"ascending, failure at the end", ascending, []int{6}, false, true, []string{"", "b/6"}},
		{"damaged key", damaged, nil, true, true, []string{""}},
		{"swapped keys", swapped, nil, true, true, []string{""}},
		{"damaged key, failure after it", damaged, []int{5}, true, false, []string{"", ""}},
		{"damaged key, failure before it", damaged, []int{1}, true, true, []string{"", "b/1"}},
		{"swapped keys, failure after them", swapped, []int{4}, true, false, []string{"", ""}},
		{"swapped keys, failures after them twice", swapped, []int{4, 5}, true, false, []string{"", "", ""}},
		// Nothing delivered is out of order yet: the listing goes on
		// after b/4, from where the store has it, and finds b/3 there.
		{"swapped keys, failure between them", swapped, []int{3}, true, true, []string{"", "b/4"}},
		{"damaged key, failure before it, then after it", damaged, []int{2, 2}, true, false, []string{"", "b/2", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &scriptedListing{keys: tc.keys, cuts: tc.cuts}
			log, records := logged(t)
			seen := map[string]int{}
			err := objstore.Retrying(store, tiny, log).List(t.Context(), "b/", "", func(info objstore.ObjectInfo) error {
				seen[info.Key]++
				return nil
			})
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			for _, key := range tc.keys {
				if seen[key] == 0 || tc.exactlyOne && seen[key] != 1 {
					t.Errorf("key %s delivered %d times; want %s", key, seen[key], map[bool]string{true: "once", false: "at least once"}[tc.exactlyOne])
				}
			}
			if !slices.Equal(store.from, tc.from) {
				t.Errorf("listings started after %q; want %q", store.from, tc.from)
			}
			warned := 0
			for _, rec := range records() {
				if strings.Contains(fmt.Sprint(rec["msg"]), "out of order") {
					warned++
				}
			}
			if tc.outOfOrder && warned != 1 || !tc.outOfOrder && warned != 0 {
				t.Errorf("logged %d out-of-order warnings; want %d", warned, map[bool]int{true: 1}[tc.outOfOrder])
			}
		})
	}
}

// TestRetryingListFromCallersStart: a listing that starts after a key
// resumes after the keys it delivered and, once it has seen keys out of
// order, starts over after the caller's key, not from the first key.
func TestRetryingListFromCallersStart(t *testing.T) {
	keys := []string{"c/1", "c/2", "c/3", "c/4", "c/5", "c/6"}
	swapped := []string{"c/1", "c/2", "c/4", "c/3", "c/5", "c/6"}
	for _, tc := range []struct {
		name string
		keys []string
		cuts []int
		want []string // the keys delivered, in order
		from []string
	}{
		{"ascending", keys, []int{2, 0, 1}, keys[2:], []string{"c/2", "c/4", "c/4", "c/5"}},
		{"swapped", swapped, []int{2}, []string{"c/4", "c/3", "c/4", "c/3", "c/5", "c/6"}, []string{"c/2", "c/2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &scriptedListing{keys: tc.keys, cuts: tc.cuts}
			var seen []string
			err := objstore.Retrying(store, tiny, nil).List(t.Context(), "c/", "c/2", func(info objstore.ObjectInfo) error {
				seen = append(seen, info.Key)
				return nil
			})
			if err != nil || !slices.Equal(seen, tc.want) {
				t.Errorf("List = %v, delivering %q; want %q", err, seen, tc.want)
			}
			if !slices.Equal(store.from, tc.from) {
				t.Errorf("listings started after %q; want %q", store.from, tc.from)
			}
		})
	}
}

// TestRetryingListBudgetPerFailureStreak: the policy's attempts bound the
// failures in a row without a key delivered in between, not the failures of
// a whole listing.
func TestRetryingListBudgetPerFailureStreak(t *testing.T) {
	keys := []string{"d/1", "d/2", "d/3", "d/4", "d/5", "d/6"}
	policy := tiny
	policy.Attempts = 2

	// A failure after every key: six failures, each after progress.
	store := &scriptedListing{keys: keys, cuts: []int{1, 1, 1, 1, 1, 1}}
	var seen []string
	err := objstore.Retrying(store, policy, nil).List(t.Context(), "d/", "", func(info objstore.ObjectInfo) error {
		seen = append(seen, info.Key)
		return nil
	})
	if err != nil || !slices.Equal(seen, keys) {
		t.Errorf("List with a failure after each key = %v, delivering %q; want each of %q once", err, seen, keys)
	}

	// Progress, then failures in a row at the same key: the streak, which
	// counts the listing that failed after d/3, runs out of attempts.
	store = &scriptedListing{keys: keys, cuts: []int{3, 0}}
	seen = nil
	err = objstore.Retrying(store, policy, nil).List(t.Context(), "d/", "", func(info objstore.ObjectInfo) error {
		seen = append(seen, info.Key)
		return nil
	})
	if !objstore.IsTransient(err) || !strings.Contains(fmt.Sprint(err), "giving up after 2 attempts") {
		t.Errorf("List failing twice in a row at d/3 = %v; want it given up after 2 attempts", err)
	}
	if !slices.Equal(seen, keys[:3]) || store.attempts != 2 {
		t.Errorf("delivered %q in %d listings; want %q in 2", seen, store.attempts, keys[:3])
	}
}

// pagedListing lists keys k/00000000, k/00000001, … in pages of pageSize
// keys, one request each, as a cloud store does: a listing starting after a
// key fetches the page that follows it, then the next, and so on. Request
// number r (0 first) fails before delivering its page when fail(r).
type pagedListing struct {
	objstore.Store
	keys, pageSize int
	fail           func(request int) bool
	requests       int
	failures       int
	fetches        map[int]int // requests by the page of their first key
}

func pagedKey(i int) string { return fmt.Sprintf("k/%08x", i) }

func (s *pagedListing) List(ctx context.Context, _, startAfter string, fn func(objstore.ObjectInfo) error) error {
	i := sort.Search(s.keys, func(i int) bool { return pagedKey(i) > startAfter })
	for i < s.keys {
		s.fetches[i/s.pageSize]++
		s.requests++
		if s.fail(s.requests - 1) {
			s.failures++
			return objstore.Transient(errBoom)
		}
		for end := min(i+s.pageSize, s.keys); i < end; i++ {
			if err := fn(objstore.ObjectInfo{Key: pagedKey(i)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// TestRetryingLongListingWithFailures: a listing of 100 pages, a tenth of
// whose requests fail, delivers every key once and fetches each page again
// only as often as it failed, although it fails far more often than the
// policy allows attempts.
func TestRetryingLongListingWithFailures(t *testing.T) {
	const pages, pageSize = 100, 100
	rng := rand.New(rand.NewPCG(16, 10))
	store := &pagedListing{keys: pages * pageSize, pageSize: pageSize, fetches: map[int]int{},
		fail: func(int) bool { return rng.Float64() < 0.1 }}
	next := 0
	err := objstore.Retrying(store, tiny, nil).List(t.Context(), "k/", "", func(info objstore.ObjectInfo) error {
		if want := pagedKey(next); info.Key != want {
			return fmt.Errorf("delivered %q; want %q", info.Key, want)
		}
		next++
		return nil
	})
	if err != nil || next != pages*pageSize {
		t.Fatalf("List = %v after %d keys; want every one of %d", err, next, pages*pageSize)
	}
	if store.failures < tiny.Attempts {
		t.Fatalf("only %d requests failed; the test wants more than the policy's %d attempts", store.failures, tiny.Attempts)
	}
	if store.requests != pages+store.failures {
		t.Errorf("%d requests for %d pages with %d failures; want one more per failure only", store.requests, pages, store.failures)
	}
	for page := range pages {
		if n := store.fetches[page]; n < 1 || n > tiny.Attempts {
			t.Errorf("page %d fetched %d times; want 1 to %d", page, n, tiny.Attempts)
		}
	}
	t.Logf("%d pages, %d requests, %d failed", pages, store.requests, store.failures)
}

var errReset = errors.New("connection reset by peer")

// cuttingStore is a memstore whose Get bodies are checked like a cloud
// driver's (a whole-object read against the MD5 of what was put, failing
// the end with a transient ErrCorrupt) and can be damaged on the way: each
// Get asks cut where its body breaks off with a transient error (-1: it
// does not), and flip which byte arrives damaged (-1: none).
type cuttingStore struct {
	objstore.Store
	cut, flip func(get int, size int64) int64

	mu   sync.Mutex
	gets int
	sums map[string][]byte
}

func newCuttingStore() *cuttingStore {
	never := func(int, int64) int64 { return -1 }
	return &cuttingStore{Store: memstore.New(), cut: never, flip: never, sums: map[string][]byte{}}
}

func (s *cuttingStore) Put(ctx context.Context, key string, data []byte, opts objstore.PutOptions) (objstore.Attrs, error) {
	a, err := s.Store.Put(ctx, key, data, opts)
	if err == nil {
		sum := md5.Sum(data)
		s.mu.Lock()
		s.sums[key] = sum[:]
		s.mu.Unlock()
	}
	return a, err
}

func (s *cuttingStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, objstore.Attrs, error) {
	rc, a, err := s.Store.Get(ctx, key, off, n)
	if err != nil {
		return rc, a, err
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, objstore.Attrs{}, err
	}
	s.mu.Lock()
	get, want := s.gets, s.sums[key]
	s.gets++
	s.mu.Unlock()
	if i := s.flip(get, int64(len(data))); i >= 0 && i < int64(len(data)) {
		data[i] ^= 0x40
	}
	var body io.Reader = bytes.NewReader(data)
	if i := s.cut(get, int64(len(data))); i >= 0 && i < int64(len(data)) {
		body = io.MultiReader(bytes.NewReader(data[:i]), iotest.ErrReader(objstore.Transient(errReset)))
	}
	verified := io.NopCloser(body)
	if off == 0 && n < 0 {
		verified = rangeread.VerifyMD5(verified, want, a.Size, "MD5 of the put")
	}
	return &rangeread.Body{ReadCloser: verified, Object: key, Classify: func(err error) error { return err }}, a, nil
}

func (s *cuttingStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets
}

// readAll reads key's range through store in reads of uneven sizes.
func readAll(ctx context.Context, store objstore.Store, key string, off, n int64) ([]byte, error) {
	rc, _, err := store.Get(ctx, key, off, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var out []byte
	buf := make([]byte, 7919)
	for {
		k, err := rc.Read(buf[:1+len(out)%len(buf)])
		out = append(out, buf[:k]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// TestRetryingGetResumesCutBodies: with every other body cut short at a
// random point, whole and ranged reads still deliver exactly the object's
// bytes, and the driver's whole-body check still runs.
func TestRetryingGetResumesCutBodies(t *testing.T) {
	s := newCuttingStore()
	rng := rand.New(rand.NewPCG(1, 2))
	s.cut = func(get int, size int64) int64 {
		if get%2 == 1 || size == 0 {
			return -1
		}
		return rng.Int64N(size)
	}
	data := storetest.RandomBytes(256 << 10)
	storetest.MustPut(t, s, "k", data, objstore.PutOptions{})
	log, records := logged(t)
	store := objstore.Retrying(s, tiny, log)
	for _, r := range []struct{ off, n int64 }{{0, -1}, {0, -1}, {0, -1}, {1000, -1}, {4096, 100000}, {0, 1}} {
		got, err := readAll(t.Context(), store, "k", r.off, r.n)
		want := data[r.off:]
		if r.n >= 0 {
			want = want[:r.n]
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("Get(%d, %d) = %d bytes, %v; want the %d bytes of the object", r.off, r.n, len(got), err, len(want))
		}
	}
	resumed := 0
	for _, rec := range records() {
		if rec["op"] == "get" && strings.Contains(fmt.Sprint(rec["err"]), "connection reset") {
			resumed++
		}
	}
	if resumed == 0 {
		t.Errorf("no resumed read was logged")
	}

}

// TestRetryingGetChecksDeliveredBytes: bytes delivered before a cut are
// checked too; damaged ones fail the read as corrupt once the object is
// read again, though the new body itself is sound.
func TestRetryingGetChecksDeliveredBytes(t *testing.T) {
	s := newCuttingStore()
	storetest.MustPut(t, s, "k", storetest.RandomBytes(10000), objstore.PutOptions{})
	s.flip = func(get int, size int64) int64 {
		if get == 0 {
			return 10
		}
		return -1
	}
	s.cut = func(get int, size int64) int64 {
		if get == 0 {
			return size / 2
		}
		return -1
	}
	_, err := readAll(t.Context(), objstore.Retrying(s, tiny, nil), "k", 0, -1)
	if !errors.Is(err, objstore.ErrCorrupt) || !objstore.IsTransient(err) || !strings.Contains(err.Error(), "differ") {
		t.Errorf("read of a body damaged before its cut = %v; want a transient ErrCorrupt saying the bytes read differ", err)
	}
}

// TestRetryingGetPassesCorruption: a body that fails its checksum at the end
// is not resumed, and its error comes back as the driver gave it.
func TestRetryingGetPassesCorruption(t *testing.T) {
	s := newCuttingStore()
	s.flip = func(int, int64) int64 { return 5 }
	storetest.MustPut(t, s, "k", storetest.RandomBytes(10000), objstore.PutOptions{})
	_, err := readAll(t.Context(), objstore.Retrying(s, tiny, nil), "k", 0, -1)
	if !errors.Is(err, objstore.ErrCorrupt) || !objstore.IsTransient(err) || !strings.Contains(err.Error(), "MD5 of the put") {
		t.Errorf("read of a damaged body = %v; want the driver's transient ErrCorrupt", err)
	}
	if got := s.count(); got != 1 {
		t.Errorf("%d GETs; want 1: a body that failed its checksum at the end is the caller's to read again", got)
	}
}

// TestRetryingGetRefusesAChangedObject: an object replaced between a cut
// and its resumption fails the read instead of splicing two versions, even
// when the new version starts with the same bytes.
func TestRetryingGetRefusesAChangedObject(t *testing.T) {
	s := newCuttingStore()
	old := storetest.RandomBytes(10000)
	storetest.MustPut(t, s, "k", old, objstore.PutOptions{})
	s.cut = func(get int, size int64) int64 {
		if get == 0 {
			// Replaced while the first body is being read.
			replaced := append(bytes.Clone(old[:6000]), storetest.RandomBytes(4000)...)
			storetest.MustPut(t, s, "k", replaced, objstore.PutOptions{})
			return 5000
		}
		return -1
	}
	got, err := readAll(t.Context(), objstore.Retrying(s, tiny, nil), "k", 0, -1)
	if err == nil || objstore.IsTransient(err) || !strings.Contains(err.Error(), "replaced") {
		t.Errorf("read of an object replaced mid-body = %d bytes, %v; want a permanent error saying it was replaced", len(got), err)
	}
	if !bytes.Equal(got, old[:len(got)]) {
		t.Errorf("delivered bytes of another version")
	}
}

// TestRetryingGetRefusesADeletedObject: an object deleted between a cut
// and its resumption fails the read, and not as "not found", which a
// device would take for a block of zeros.
func TestRetryingGetRefusesADeletedObject(t *testing.T) {
	s := newCuttingStore()
	storetest.MustPut(t, s, "k", storetest.RandomBytes(10000), objstore.PutOptions{})
	s.cut = func(get int, size int64) int64 {
		if get == 0 {
			if err := s.Delete(t.Context(), "k"); err != nil {
				t.Error(err)
			}
			return 5000
		}
		return -1
	}
	got, err := readAll(t.Context(), objstore.Retrying(s, tiny, nil), "k", 0, -1)
	if err == nil || errors.Is(err, objstore.ErrNotFound) || !strings.Contains(err.Error(), "deleted") {
		t.Errorf("read of an object deleted mid-body = %d bytes, %v; want an error saying so, not ErrNotFound", len(got), err)
	}
}

// TestRetryingGetGivesUpWithoutProgress: a body that always breaks off at
// the same point is retried within the policy, not forever.
func TestRetryingGetGivesUpWithoutProgress(t *testing.T) {
	s := newCuttingStore()
	s.cut = func(int, int64) int64 { return 3000 }
	storetest.MustPut(t, s, "k", storetest.RandomBytes(10000), objstore.PutOptions{})
	got, err := readAll(t.Context(), objstore.Retrying(s, tiny, nil), "k", 0, -1)
	if len(got) != 3000 || !objstore.IsTransient(err) || !errors.Is(err, errReset) || !strings.Contains(err.Error(), "giving up") {
		t.Errorf("read = %d bytes, %v; want 3000 and the transient error after giving up", len(got), err)
	}
	if got := s.count(); got != tiny.Attempts {
		t.Errorf("%d GETs; want %d", got, tiny.Attempts)
	}

	// A cancelled context stops the retries at once.
	ctx, cancel := context.WithCancel(t.Context())
	s.cut = func(get int, size int64) int64 { cancel(); return 3000 }
	_, err = readAll(ctx, objstore.Retrying(s, objstore.RetryPolicy{Attempts: 1000, BaseDelay: time.Hour, MaxDelay: time.Hour}, nil), "k", 0, -1)
	if !errors.Is(err, context.Canceled) || objstore.IsTransient(err) {
		t.Errorf("read after cancellation = %v; want context.Canceled, not transient", err)
	}
}

// Retry gives a call outside any store (opening one) the same retries:
// transient failures are retried, others return at once.
func TestRetryCall(t *testing.T) {
	calls := 0
	err := objstore.Retry(t.Context(), tiny, nil, "open", "bucket", func() error {
		calls++
		if calls < 3 {
			return objstore.Transient(errBoom)
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Errorf("two transient failures: err %v after %d calls, want nil after 3", err, calls)
	}
	calls = 0
	err = objstore.Retry(t.Context(), tiny, nil, "open", "bucket", func() error {
		calls++
		return objstore.ErrBucketNotFound
	})
	if !errors.Is(err, objstore.ErrBucketNotFound) || calls != 1 {
		t.Errorf("a permanent failure: err %v after %d calls, want ErrBucketNotFound after 1", err, calls)
	}
	calls = 0
	err = objstore.Retry(t.Context(), tiny, nil, "open", "bucket", func() error {
		calls++
		return objstore.Transient(errBoom)
	})
	if !errors.Is(err, errBoom) || calls != tiny.Attempts {
		t.Errorf("failing for good: err %v after %d calls, want errBoom after %d", err, calls, tiny.Attempts)
	}
}
