package filestore

import (
	"bufio"
	"container/heap"
	"io"
	"os"
	"slices"
	"strings"
)

// sortBound is how many names a listing holds to sort a directory, about
// 32 bytes each: a directory of more is sorted in runs of sortBound names,
// each written to a temporary file, then merged, holding one name per run
// (10^8 blocks in one directory: 96 runs). A variable for the tests.
var sortBound = 1 << 20

// spillPattern names the sorted runs of a listing, in the store's root.
// The leading '.' keeps them out of listings and out of the key space;
// they are unlinked as soon as created, so that nothing is left of them
// once the listing ends, even by a crash.
const spillPattern = ".list-*"

// runBuffer is the read buffer of each run merged.
const runBuffer = 32 << 10

// nameSorter sorts the names added to it, holding at most bound of them:
// an external merge sort.
type nameSorter struct {
	bound int
	dir   string // where runs are spilled
	names []string
	runs  []*os.File
}

func newNameSorter(dir string, bound int) *nameSorter {
	return &nameSorter{bound: bound, dir: dir}
}

func (s *nameSorter) add(name string) error {
	if len(s.names) == s.bound {
		if err := s.spill(); err != nil {
			return err
		}
	}
	s.names = append(s.names, name)
	return nil
}

// spill writes the names held, sorted and each ended by a NUL byte (which
// no name holds), to a new run.
func (s *nameSorter) spill() error {
	slices.Sort(s.names)
	f, err := os.CreateTemp(s.dir, spillPattern)
	if err != nil {
		return err
	}
	s.runs = append(s.runs, f)
	if err := os.Remove(f.Name()); err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, n := range s.names {
		w.WriteString(n)
		w.WriteByte(0)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	clear(s.names) // for the collector
	s.names = s.names[:0]
	return nil
}

// sorted returns the names added, in order. Every run is released when
// the names run out, or by close.
func (s *nameSorter) sorted() (*sortedNames, error) {
	if len(s.runs) == 0 {
		slices.Sort(s.names)
		return &sortedNames{held: s.names}, nil
	}
	if len(s.names) > 0 {
		if err := s.spill(); err != nil {
			s.close()
			return nil, err
		}
	}
	s.names = nil
	out := &sortedNames{runs: make(runHeap, 0, len(s.runs))}
	for _, f := range s.runs {
		r := &run{f: f, r: bufio.NewReaderSize(f, runBuffer)}
		if err := r.advance(); err != nil {
			f.Close()
			if err == io.EOF {
				continue
			}
			out.close()
			s.runs = nil
			return nil, err
		}
		out.runs = append(out.runs, r)
	}
	s.runs = nil
	heap.Init(&out.runs)
	return out, nil
}

// close releases the runs of a sorter whose names are not read.
func (s *nameSorter) close() {
	for _, f := range s.runs {
		f.Close()
	}
	s.runs = nil
}

// sortedNames yields names in order: those held, or the heads of the runs
// merged.
type sortedNames struct {
	held []string
	runs runHeap
}

// next returns the next name; ok is false at the end or on err.
func (n *sortedNames) next() (name string, ok bool, err error) {
	if n.runs == nil {
		if len(n.held) == 0 {
			return "", false, nil
		}
		name, n.held = n.held[0], n.held[1:]
		return name, true, nil
	}
	if len(n.runs) == 0 {
		return "", false, nil
	}
	r := n.runs[0]
	name = r.head
	switch err := r.advance(); err {
	case nil:
		heap.Fix(&n.runs, 0)
	case io.EOF:
		r.f.Close()
		heap.Pop(&n.runs)
	default:
		return "", false, err
	}
	return name, true, nil
}

func (n *sortedNames) close() {
	for _, r := range n.runs {
		r.f.Close()
	}
	n.runs = n.runs[:0]
}

// run is a sorted run being merged: its file and its next name.
type run struct {
	f    *os.File
	r    *bufio.Reader
	head string
}

func (r *run) advance() error {
	s, err := r.r.ReadString(0)
	if err != nil {
		// A run ends after a NUL: a name cut short is a failed read.
		if err == io.EOF && s != "" {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	r.head = strings.TrimSuffix(s, "\x00")
	return nil
}

// runHeap orders runs by their next name.
type runHeap []*run

func (h runHeap) Len() int           { return len(h) }
func (h runHeap) Less(i, j int) bool { return h[i].head < h[j].head }
func (h runHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)        { *h = append(*h, x.(*run)) }
func (h *runHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	*h = old[:len(old)-1]
	return r
}
