package nbd

import "testing"

func TestBufferClasses(t *testing.T) {
	for _, n := range []int{1, 4096, 4097, 1 << 20, 1<<20 + 1, DefaultMaxBlockSize} {
		b := getBuffer(n)
		if len(*b) != replyHeaderLen+n {
			t.Errorf("getBuffer(%d): len %d, want %d", n, len(*b), replyHeaderLen+n)
		}
		// The class must be the smallest that fits, so pooled memory is at
		// most twice the payload.
		if c := cap(*b) - replyHeaderLen; c < n || c >= 2*n && c > 4096 {
			t.Errorf("getBuffer(%d): capacity %d", n, c)
		}
		putBuffer(b)
	}
}
