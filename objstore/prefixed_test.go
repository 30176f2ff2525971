package objstore_test

import (
	"slices"
	"testing"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/memstore"
	"github.com/objbacker/objbacker/objstore/storetest"
)

func TestPrefixedConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) objstore.Store { return objstore.Prefixed(memstore.New(), "vol/") })
}

func TestPrefixedKeysLandUnderThePrefix(t *testing.T) {
	bucket := memstore.New()
	s := objstore.Prefixed(bucket, "vol/")
	storetest.MustPut(t, s, "00000001", []byte("block"), objstore.PutOptions{})
	storetest.MustPut(t, s, "sub/00000002", []byte("block"), objstore.PutOptions{})
	// Neighbours of the prefix that the view must not see.
	for _, key := range []string{"vol", "vol0/x", "volume/x", "other/00000001"} {
		storetest.MustPut(t, bucket, key, []byte("outside"), objstore.PutOptions{})
	}

	if got, _ := storetest.MustGet(t, bucket, "vol/00000001", 0, -1); string(got) != "block" {
		t.Errorf("bucket key vol/00000001 = %q; want the block put through the view", got)
	}
	var keys []string
	for _, info := range storetest.ListAll(t, s, "") {
		keys = append(keys, info.Key)
	}
	if want := []string{"00000001", "sub/00000002"}; !slices.Equal(keys, want) {
		t.Errorf("List through the view = %q; want %q with the prefix stripped", keys, want)
	}
	if got := storetest.ListAll(t, s, "sub/"); len(got) != 1 || got[0].Key != "sub/00000002" {
		t.Errorf("List(sub/) through the view = %+v; want only sub/00000002", got)
	}
	if objstore.Prefixed(bucket, "") != objstore.Store(bucket) {
		t.Error("Prefixed with an empty prefix should return the store itself")
	}
}
