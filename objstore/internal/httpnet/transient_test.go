package httpnet

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"
)

func TestIsTransient(t *testing.T) {
	// 192.0.2.1 is TEST-NET-1; the deadline passes before any packet leaves.
	_, dialTimeout := (&net.Dialer{Timeout: time.Nanosecond}).Dial("tcp", "192.0.2.1:80")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	_, refused := http.Get("http://" + closed)

	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"dial timeout", dialTimeout, true},
		{"connection refused", refused, true},
		{"server closed the connection first", &url.Error{Op: "Put", URL: "http://host/k", Err: io.EOF}, true},
		{"body cut short", io.ErrUnexpectedEOF, true},
		{"an answer of the server", errors.New("403 Forbidden"), false},
		{"the caller's cancellation", &url.Error{Op: "Get", URL: "http://host/k", Err: context.Canceled}, false},
	} {
		if got := IsTransient(tc.err); got != tc.want {
			t.Errorf("IsTransient(%s: %v) = %v; want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
