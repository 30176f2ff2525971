package filestore

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/storetest"
)

// withSortBound makes listings sort directories of more than bound names
// on disk, for the test.
func withSortBound(t *testing.T, bound int) {
	old := sortBound
	sortBound = bound
	t.Cleanup(func() { sortBound = old })
}

// The sorter holds at most bound names while they are added, and one per
// run while they are merged, and gives every name back once, in order.
func TestNameSorterHoldsAtMostBound(t *testing.T) {
	const bound, count = 7, 1000
	dir := t.TempDir()
	var names []string
	for i := range count {
		// Names that are prefixes of others, and bytes above ASCII.
		names = append(names, fmt.Sprintf("%x", rand.Uint32()>>(i%32))+[]string{"", "-x", "\u00e9", "/"}[i%4])
	}
	names = slices.Compact(slices.Sorted(slices.Values(names)))
	shuffled := slices.Clone(names)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	s := newNameSorter(dir, bound)
	for _, n := range shuffled {
		if err := s.add(n); err != nil {
			t.Fatal(err)
		}
		if len(s.names) > bound {
			t.Fatalf("the sorter holds %d names, bound %d", len(s.names), bound)
		}
	}
	runs := (len(names) + bound - 1) / bound
	sorted, err := s.sorted()
	if err != nil {
		t.Fatal(err)
	}
	defer sorted.close()
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the runs are left in the directory: %v", left)
	}
	var got []string
	for {
		if len(sorted.held) > 0 || len(sorted.runs) > runs {
			t.Fatalf("merging holds %d names and %d runs, want none and at most %d", len(sorted.held), len(sorted.runs), runs)
		}
		n, ok, err := sorted.next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, n)
	}
	if !slices.Equal(got, names) {
		t.Errorf("the sorter gave back %d names, in this order: %.200q; want the %d added, sorted", len(got), got, len(names))
	}
}

// A directory larger than the bound lists every key once, in key order,
// from startAfter and under the prefix.
func TestListLargeDirectory(t *testing.T) {
	withSortBound(t, 10)
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for n := range 700 {
		keys = append(keys, fmt.Sprintf("%08x", n*0x1357))
	}
	// A directory whose keys sort among the files' ("0000a/" comes after
	// "0000a-x"), larger than the bound too.
	for n := range 25 {
		keys = append(keys, fmt.Sprintf("0000a/%03d", n), fmt.Sprintf("0000a-%03d", n))
	}
	for _, k := range keys {
		storetest.MustPut(t, s, k, []byte(k), objstore.PutOptions{})
	}
	slices.Sort(keys)
	for _, c := range []struct{ prefix, startAfter string }{
		{"", ""}, {"000", ""}, {"0000a", ""}, {"0000a/", "0000a/010"}, {"", "0000a-020"}, {"", "0002"}, {"001", "0000ffff"}, {"", "zzz"},
	} {
		var want, got []string
		for _, k := range keys {
			if strings.HasPrefix(k, c.prefix) && k > c.startAfter {
				want = append(want, k)
			}
		}
		if err := s.List(t.Context(), c.prefix, c.startAfter, func(info objstore.ObjectInfo) error {
			if c.prefix == "" && c.startAfter == "" && len(got) == 0 {
				// The root's 726 names, sorted in runs of 10.
				if runs := openRuns(t); runs != 73 {
					t.Errorf("%d sorted runs open at the first key, want 73", runs)
				}
			}
			got = append(got, info.Key)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("List(%q, %q): %d keys %.100q…, want %d %.100q…", c.prefix, c.startAfter, len(got), got, len(want), want)
		}
	}
}

// openRuns counts the sorted runs this process holds open.
func openRuns(t *testing.T) int {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	runs := 0
	for _, fd := range fds {
		target, _ := os.Readlink("/proc/self/fd/" + fd.Name())
		if strings.Contains(target, "/"+strings.TrimSuffix(spillPattern, "*")) {
			runs++
		}
	}
	return runs
}

// The store passes the conformance suite while every directory of more
// than 3 names is sorted on disk.
func TestConformanceSortingOnDisk(t *testing.T) {
	withSortBound(t, 3)
	storetest.Run(t, func(t *testing.T) objstore.Store {
		s, err := Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
