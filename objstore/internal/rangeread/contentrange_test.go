package rangeread

import "testing"

func TestContentRangeSize(t *testing.T) {
	for _, tc := range []struct {
		contentRange string
		size         int64
		ok           bool
	}{
		{"bytes 0-99/1000", 1000, true},
		{"bytes */1000", 1000, true}, // a 416's answer
		{"bytes 0-99/*", 0, false},   // size unknown to the server
		{"", 0, false},               // not a ranged answer
		{"bytes 0-99", 0, false},
	} {
		size, ok := ContentRangeSize(tc.contentRange)
		if size != tc.size || ok != tc.ok {
			t.Errorf("ContentRangeSize(%q) = %d, %v; want %d, %v", tc.contentRange, size, ok, tc.size, tc.ok)
		}
	}
}
