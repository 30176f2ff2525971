package objstore_test

import (
	"testing"
	"time"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/memstore"
)

// scanningStore says that its listings read every key.
type scanningStore struct{ objstore.Store }

func (scanningStore) ListScansAll() bool { return true }

// The wrappers pass on whether their store's listings read every key.
func TestWrappersPassListScansAllOn(t *testing.T) {
	wrap := map[string]func(objstore.Store) objstore.Store{
		"Retrying": func(s objstore.Store) objstore.Store { return objstore.Retrying(s, objstore.DefaultRetryPolicy(), nil) },
		"Counting": func(s objstore.Store) objstore.Store { return objstore.Counting(s, new(objstore.Counts)) },
		"Latency": func(s objstore.Store) objstore.Store {
			return objstore.Latency(s, objstore.LatencyConfig{Latency: time.Millisecond})
		},
		"Prefixed": func(s objstore.Store) objstore.Store { return objstore.Prefixed(s, "vol/") },
	}
	for name, w := range wrap {
		if !objstore.ListScansAll(w(scanningStore{memstore.New()})) {
			t.Errorf("%s over a store whose listings read every key says they do not", name)
		}
		if objstore.ListScansAll(w(memstore.New())) {
			t.Errorf("%s over memstore says its listings read every key", name)
		}
	}
}
