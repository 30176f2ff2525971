package rangeread

import (
	"strconv"
	"strings"
)

// ContentRangeSize reads the object size from a Content-Range such as
// "bytes 0-99/1000": a ranged answer's Content-Length is only the range's.
func ContentRangeSize(contentRange string) (int64, bool) {
	_, total, ok := strings.Cut(contentRange, "/")
	if !ok {
		return 0, false
	}
	size, err := strconv.ParseInt(total, 10, 64)
	return size, err == nil
}
