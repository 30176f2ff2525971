package filestore

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"syscall"
)

// processLockStripes is how many lock files the conditional puts of
// different processes share: two such puts of different keys seldom wait
// for each other, and the root holds at most this many lock files.
const processLockStripes = 64

// lockProcesses takes the lock that conditional puts of key hold across
// processes: an exclusive flock(2) of the root's lock file ".lock-NN" for
// key's stripe, chosen by a hash every process computes alike. Within one
// process the key's mutex is not enough: two daemons started on one
// directory must not both create the mount marker. The returned function
// releases it.
func (s *Store) lockProcesses(key string) (unlock func(), err error) {
	h := fnv.New32a()
	h.Write([]byte(key))
	name := filepath.Join(s.root, fmt.Sprintf(".lock-%02d", h.Sum32()%processLockStripes))
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", name, err)
	}
	// Closing the last descriptor of the file releases the lock.
	return func() { f.Close() }, nil
}
