package storetest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/objbacker/objbacker/objstore"
)

// Faults is how a Faulty store misbehaves.
type Faults struct {
	// Fail is the fraction of requests that fail with a transient error.
	// Half of them fail before reaching the store; the other half fail
	// after it did the work: a PUT or DELETE done whose answer was lost, a
	// listing broken off part-way, a GET whose body breaks off part-way
	// (with CutBodies; without, the GET fails as if before).
	Fail float64
	// CutBodies lets failing GETs return a body that ends early with a
	// transient error instead of failing outright.
	CutBodies bool
	// Delay bounds a random wait before a request reaches the store and
	// another before its answer returns, so that answers come back out of
	// order, and a request may be done long before its caller hears of it.
	Delay time.Duration
	// Slow is the fraction of requests whose waits are bounded by SlowDelay
	// instead: the stragglers that leave a wide window for other requests
	// on the same object to overtake them.
	Slow      float64
	SlowDelay time.Duration
}

// Faulty is a test double: a store on a bad day, wrapping another one. Its
// faults are drawn from a seed, per key and per request on that key (the
// n-th GET of a key meets the same fate in every run with that seed), so a
// failing test reports its seed and the fates repeat, though the order in
// which concurrent callers meet them depends on the scheduler.
type Faulty struct {
	next   objstore.Store
	seed   uint64
	faults atomic.Pointer[Faults]

	mu    sync.Mutex
	calls map[string]uint64 // requests so far per operation and key

	// Injected failures, for a test's log.
	Failed, LostAnswers, CutOff atomic.Int64
}

// NewFaulty wraps store; it starts with f's faults.
func NewFaulty(store objstore.Store, seed uint64, f Faults) *Faulty {
	s := &Faulty{next: store, seed: seed, calls: make(map[string]uint64)}
	s.SetFaults(f)
	return s
}

// SetFaults changes the faults of the requests that start from now on.
func (s *Faulty) SetFaults(f Faults) { s.faults.Store(&f) }

// errFault is the cause of every injected failure.
var errFault = errors.New("injected fault")

// fate is what happens to one request.
type fate struct {
	rng         *rand.Rand
	delay       time.Duration // before reaching the store
	answerDelay time.Duration // before the answer returns
	before      bool          // fail before reaching the store
	after       bool          // fail after the store did the work
	brokenBody  bool
}

// draw decides the fate of the next request op on key.
func (s *Faulty) draw(op, key string) fate {
	f := s.faults.Load()
	s.mu.Lock()
	id := op + "\x00" + key
	n := s.calls[id]
	s.calls[id] = n + 1
	s.mu.Unlock()
	h := fnv.New64a()
	h.Write([]byte(id))
	var nb [8]byte
	binary.LittleEndian.PutUint64(nb[:], n)
	h.Write(nb[:])
	rng := rand.New(rand.NewPCG(s.seed, h.Sum64()))
	ft := fate{rng: rng}
	bound := f.Delay
	if rng.Float64() < f.Slow {
		bound = f.SlowDelay
	}
	if bound > 0 {
		ft.delay = time.Duration(rng.Int64N(int64(bound)))
		ft.answerDelay = time.Duration(rng.Int64N(int64(bound)))
	}
	if rng.Float64() < f.Fail {
		if rng.IntN(2) == 0 {
			ft.before = true
		} else {
			ft.after = true
			ft.brokenBody = f.CutBodies
		}
	}
	return ft
}

// wait sleeps d unless ctx ends first.
func wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// start is the part of a request before it reaches the store: a wait, and
// perhaps a failure.
func (s *Faulty) start(ctx context.Context, ft fate, op, key string) error {
	if err := wait(ctx, ft.delay); err != nil {
		return err
	}
	if ft.before {
		s.Failed.Add(1)
		return objstore.Transient(fmt.Errorf("%s %q: %w before reaching the store", op, key, errFault))
	}
	return nil
}

// finish is the part after: a wait for the answer, which may be lost.
func (s *Faulty) finish(ctx context.Context, ft fate, op, key string, err error) error {
	if werr := wait(ctx, ft.answerDelay); werr != nil && err == nil {
		return werr // the caller gave up before the answer came
	}
	if ft.after && err == nil {
		s.Failed.Add(1)
		s.LostAnswers.Add(1)
		return objstore.Transient(fmt.Errorf("%s %q: %w after the store did the work", op, key, errFault))
	}
	return err
}

func (s *Faulty) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, objstore.Attrs, error) {
	ft := s.draw("get", key)
	if err := s.start(ctx, ft, "get", key); err != nil {
		return nil, objstore.Attrs{}, err
	}
	rc, a, err := s.next.Get(ctx, key, off, n)
	if err == nil && ft.brokenBody {
		// The answer starts to arrive and breaks off.
		if werr := wait(ctx, ft.answerDelay); werr != nil {
			rc.Close()
			return nil, objstore.Attrs{}, werr
		}
		s.Failed.Add(1)
		s.CutOff.Add(1)
		body, rerr := io.ReadAll(rc)
		rc.Close()
		if rerr != nil {
			return nil, objstore.Attrs{}, rerr
		}
		cut := int64(0)
		if len(body) > 0 {
			cut = ft.rng.Int64N(int64(len(body)))
		}
		return &brokenBody{data: body[:cut], err: objstore.Transient(fmt.Errorf("get %q: %w: body cut after %d of %d bytes", key, errFault, cut, len(body)))}, a, nil
	}
	if err = s.finish(ctx, ft, "get", key, err); err != nil && rc != nil {
		rc.Close()
		rc = nil
	}
	return rc, a, err
}

// brokenBody is a body that ends early with err.
type brokenBody struct {
	data []byte
	err  error
}

func (c *brokenBody) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, c.err
	}
	n := copy(p, c.data)
	c.data = c.data[n:]
	return n, nil
}

func (c *brokenBody) Close() error { return nil }

func (s *Faulty) Put(ctx context.Context, key string, data []byte, opts objstore.PutOptions) (objstore.Attrs, error) {
	ft := s.draw("put", key)
	if err := s.start(ctx, ft, "put", key); err != nil {
		return objstore.Attrs{}, err
	}
	a, err := s.next.Put(ctx, key, data, opts)
	return a, s.finish(ctx, ft, "put", key, err)
}

func (s *Faulty) Delete(ctx context.Context, key string) error {
	ft := s.draw("delete", key)
	if err := s.start(ctx, ft, "delete", key); err != nil {
		return err
	}
	return s.finish(ctx, ft, "delete", key, s.next.Delete(ctx, key))
}

func (s *Faulty) DeleteIfMatch(ctx context.Context, key, etag string) error {
	ft := s.draw("delete", key)
	if err := s.start(ctx, ft, "delete", key); err != nil {
		return err
	}
	return s.finish(ctx, ft, "delete", key, s.next.DeleteIfMatch(ctx, key, etag))
}

func (s *Faulty) Stat(ctx context.Context, key string) (objstore.Attrs, error) {
	ft := s.draw("stat", key)
	if err := s.start(ctx, ft, "stat", key); err != nil {
		return objstore.Attrs{}, err
	}
	a, err := s.next.Stat(ctx, key)
	return a, s.finish(ctx, ft, "stat", key, err)
}

// List breaks off after a random number of entries when it fails after
// reaching the store.
func (s *Faulty) List(ctx context.Context, prefix, startAfter string, fn func(objstore.ObjectInfo) error) error {
	ft := s.draw("list", prefix)
	if err := s.start(ctx, ft, "list", prefix); err != nil {
		return err
	}
	if !ft.after {
		return s.finish(ctx, ft, "list", prefix, s.next.List(ctx, prefix, startAfter, fn))
	}
	stop := ft.rng.IntN(8)
	errStop := errors.New("stop")
	err := s.next.List(ctx, prefix, startAfter, func(info objstore.ObjectInfo) error {
		if stop == 0 {
			return errStop
		}
		stop--
		return fn(info)
	})
	if err != nil && !errors.Is(err, errStop) {
		return err
	}
	s.Failed.Add(1)
	return objstore.Transient(fmt.Errorf("list %q: %w: listing broken off", prefix, errFault))
}

func (s *Faulty) Close() error { return s.next.Close() }
