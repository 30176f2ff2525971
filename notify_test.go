package main

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeNotifiesSystemd: serve started with $NOTIFY_SOCKET (systemd's
// Type=notify, scripts/systemd/objbacker.service) says READY=1 once its
// exports answer and STOPPING=1 when it begins to stop.
func TestServeNotifiesSystemd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	next := func() string {
		t.Helper()
		buf := make([]byte, 256)
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}
	s := startServe(t, "--export", "d="+fileURL(t, "d"), "--size", "16M")
	if got := next(); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	if !strings.Contains(s.stderr.String(), "msg=serving") {
		t.Fatal("READY=1 before the log says serving")
	}
	if code := s.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if got := next(); got != "STOPPING=1" {
		t.Fatalf("notification at the stop %q, want STOPPING=1", got)
	}
}
