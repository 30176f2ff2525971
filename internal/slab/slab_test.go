package slab

import "testing"

func TestArenaCarvesSlabsIntoSeparateBuffers(t *testing.T) {
	const bs = 16 << 20 // 4 blocks per slab
	a := New(bs, 1<<30)
	defer a.Release()
	var got [][]byte
	for i := range 6 {
		b := a.Get()
		if len(b) != bs || cap(b) != bs {
			t.Fatalf("buffer %d: len %d cap %d, want both %d (an append must not reach the next block)", i, len(b), cap(b), bs)
		}
		b[0], b[bs-1] = byte(i), byte(i)
		got = append(got, b)
	}
	if len(a.slabs) != 2 {
		t.Fatalf("6 blocks of 4 per slab took %d slabs, want 2", len(a.slabs))
	}
	for i, b := range got {
		if b[0] != byte(i) || b[bs-1] != byte(i) {
			t.Fatalf("buffer %d was overwritten through another one", i)
		}
	}
	a.Put(got[2])
	if b := a.Get(); &b[0] != &got[2][0] {
		t.Fatal("a freed buffer was not reused first")
	}
	if len(a.slabs) != 2 {
		t.Fatalf("reuse mapped a new slab: %d slabs", len(a.slabs))
	}
}
