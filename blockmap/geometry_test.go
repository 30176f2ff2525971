package blockmap

import (
	"errors"
	"testing"
)

func TestBlockKeyMatchesS3backer(t *testing.T) {
	for n, want := range map[int64]string{0: "00000000", 1: "00000001", 255: "000000ff", 65536: "00010000", 1 << 24: "01000000", 1<<32 - 1: "ffffffff"} {
		if got := BlockKey(n); got != want {
			t.Errorf("BlockKey(%d) = %q, want %q", n, got, want)
		}
		if back, ok := ParseBlockKey(want); !ok || back != n {
			t.Errorf("ParseBlockKey(%q) = %d, %v", want, back, ok)
		}
	}
	for _, bad := range []string{"", "0000000", "000000000", "0000000G", "0000000A", "objbacker-device", "s3backer-mounted"} {
		if _, ok := ParseBlockKey(bad); ok {
			t.Errorf("ParseBlockKey(%q) accepted", bad)
		}
	}
}

// The vectors come from s3backer's own http_io_block_hash_prefix, compiled.
func TestHashPrefixNamesMatchS3backer(t *testing.T) {
	nm := Naming{HashPrefix: true}
	for n, want := range map[int64]string{
		0: "c448b72c-00000000", 1: "d211cad9-00000001", 2: "7183baa1-00000002", 255: "6ad31a26-000000ff",
		65536: "b1b53b7c-00010000", 1 << 24: "7a2e9ecc-01000000", 1<<32 - 1: "0f447858-ffffffff", 12345: "138a4b3e-00003039",
	} {
		if got := nm.Key(n); got != want {
			t.Errorf("Key(%d) = %q, want %q", n, got, want)
		}
		if back, ok := nm.Parse(want); !ok || back != n {
			t.Errorf("Parse(%q) = %d, %v", want, back, ok)
		}
	}
	for _, bad := range []string{"00000000", "c448b72c-00000001", "c448b72c_00000000", "C448B72C-00000000", "c448b72c-0000000"} {
		if _, ok := nm.Parse(bad); ok {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestGeometryValidate(t *testing.T) {
	ok := []Geometry{{16 << 30, 1 << 20}, {4 << 10, 4 << 10}, {64 << 20, 64 << 20}, {1 << 52, 1 << 20}}
	for _, g := range ok {
		if err := g.Validate(); err != nil {
			t.Errorf("%+v: %v", g, err)
		}
	}
	bad := []Geometry{{16 << 30, 3 << 20}, {16 << 30, 2 << 10}, {1 << 30, 128 << 20}, {0, 1 << 20}, {(1 << 20) + 512, 1 << 20}, {1 << 53, 1 << 20}}
	for _, g := range bad {
		if err := g.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: err = %v, want ErrInvalidConfig", g, err)
		}
	}
}

func TestSectorSet(t *testing.T) {
	s := newSectorSet(64 << 10) // 128 sectors
	s.add(0, 1024)
	s.add(4096, 8192)
	s.add(4096, 512) // again: no double count
	if s.count != 2+16 || s.full() {
		t.Fatalf("count %d", s.count)
	}
	if !s.covers(4096, 8192) || s.covers(0, 2048) {
		t.Fatal("covers")
	}
	var gaps [][2]int64
	s.gaps(func(off, n int64) { gaps = append(gaps, [2]int64{off, n}) })
	want := [][2]int64{{1024, 3072}, {12288, 64<<10 - 12288}}
	if len(gaps) != 2 || gaps[0] != want[0] || gaps[1] != want[1] {
		t.Fatalf("gaps %v, want %v", gaps, want)
	}
	s.add(0, 64<<10)
	if !s.full() {
		t.Fatal("not full after covering everything")
	}
}

func TestPresence(t *testing.T) {
	p := newPresence()
	for _, n := range []int64{0, 63, 64, chunkBlocks, 1<<32 - 1} {
		p.set(n, true)
		p.set(n, true)
	}
	if p.count != 5 || !p.has(63) || p.has(62) || !p.has(1<<32-1) {
		t.Fatalf("presence count %d", p.count)
	}
	p.set(63, false)
	p.set(62, false)
	if p.count != 4 || p.has(63) {
		t.Fatal("clear")
	}
}
