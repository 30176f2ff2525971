package main

import "testing"

func TestPayloadBudget(t *testing.T) {
	for _, tc := range []struct {
		cache    int64
		parallel int
		want     int64
	}{
		{256 << 20, 16, 32 << 20},  // the defaults: two requests of 1 MiB per store request
		{256 << 20, 64, 128 << 20}, // half the cache at most
		{512 << 20, 64, 128 << 20},
		{1 << 30, 256, 512 << 20},
		{64 << 20, 1, 8 << 20}, // never below the old server-wide budget
		{16 << 20, 16, 8 << 20},
		{8 << 20, 1, 4 << 20}, // but never above half the cache
	} {
		if got := payloadBudget(tc.cache, tc.parallel); got != tc.want {
			t.Errorf("payloadBudget(%d MiB, %d) = %d MiB, want %d MiB", tc.cache>>20, tc.parallel, got>>20, tc.want>>20)
		}
	}
}
