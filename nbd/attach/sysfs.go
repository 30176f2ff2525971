package attach

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ParseDevice turns /dev/nbdN (or nbdN) into N.
func ParseDevice(dev string) (int, error) {
	name := strings.TrimPrefix(filepath.Clean(dev), "/dev/")
	n, ok := strings.CutPrefix(name, "nbd")
	if ok {
		if i, err := strconv.Atoi(n); err == nil && i >= 0 {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%q is not an NBD device (/dev/nbdN)", dev)
}

// setMaxSectors lets one request carry kb KiB (1024: a 1 MiB record is one
// request), within the device's hardware limit, and returns what was set.
func setMaxSectors(sysfs string, index, kb int) (int, error) {
	q := filepath.Join(sysfs, "block", fmt.Sprintf("nbd%d", index), "queue")
	if hw, err := readInt(filepath.Join(q, "max_hw_sectors_kb")); err == nil && hw < kb {
		kb = hw
	}
	if err := os.WriteFile(filepath.Join(q, "max_sectors_kb"), []byte(strconv.Itoa(kb)), 0); err != nil {
		return 0, err
	}
	return readInt(filepath.Join(q, "max_sectors_kb"))
}

func readInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
