package storetest

import (
	"context"

	"github.com/objbacker/objbacker/objstore"
)

// StalledPuts is a test double: it holds every PUT of an 8-character key,
// the name of a block object, until its context ends, like a store that
// accepts connections and never answers. Other objects (a device's
// descriptor and mount marker) are stored.
type StalledPuts struct{ objstore.Store }

func (s StalledPuts) Put(ctx context.Context, key string, data []byte, opts objstore.PutOptions) (objstore.Attrs, error) {
	if len(key) == 8 {
		<-ctx.Done()
		return objstore.Attrs{}, ctx.Err()
	}
	return s.Store.Put(ctx, key, data, opts)
}
