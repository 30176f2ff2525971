// Package bytesize reads and prints sizes in binary units, as the flags
// and logs of objbacker spell them: 16G, 1M, 4096.
package bytesize

import (
	"fmt"
	"strconv"
	"strings"
)

// Parse reads sizes like "16G", "1M", "512k", "4096", "1.5T" (binary
// units: K = 1024). A trailing "B" or "iB" is accepted ("1MiB", "1GB").
func Parse(s string) (int64, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(t, "B"), "b"), "i")
	if t == "" {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	mult := int64(1)
	switch t[len(t)-1] {
	case 'k', 'K':
		mult = 1 << 10
	case 'm', 'M':
		mult = 1 << 20
	case 'g', 'G':
		mult = 1 << 30
	case 't', 'T':
		mult = 1 << 40
	case 'p', 'P':
		mult = 1 << 50
	}
	if mult != 1 {
		t = t[:len(t)-1]
	}
	if n, err := strconv.ParseInt(t, 10, 64); err == nil {
		if n < 0 || n > (1<<63-1)/mult {
			return 0, fmt.Errorf("invalid size %q: out of range", s)
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || f*float64(mult) >= 1<<63 {
		return 0, fmt.Errorf("invalid size %q (want e.g. 16G, 1M, 4096)", s)
	}
	return int64(f * float64(mult)), nil
}

// Format prints n with the largest binary unit that divides it exactly.
func Format(n int64) string {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"P", 50}, {"T", 40}, {"G", 30}, {"M", 20}, {"K", 10}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}
