package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestUnixSocket: --listen unix:PATH beside the TCP address, with the
// socket's mode and owner set; nbdinfo, nbdcopy and fio through
// nbd+unix://; the socket file goes at exit.
func TestUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "objbacker.sock")
	usr, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	grp, err := user.LookupGroupId(fmt.Sprint(os.Getgid()))
	if err != nil {
		t.Fatal(err)
	}
	s := startServe(t, "--listen", "unix:"+sock, "--listen-mode", "0660", "--listen-owner", usr.Username+":"+grp.Name,
		"--size", "64M", "--export", "d=mem://")
	info, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	st := info.Sys().(*syscall.Stat_t)
	if info.Mode() != fs.ModeSocket|0o660 || int(st.Uid) != os.Getuid() || int(st.Gid) != os.Getgid() {
		t.Errorf("socket %v owned by %d:%d; want %v owned by %d:%d", info.Mode(), st.Uid, st.Gid, fs.ModeSocket|0o660, os.Getuid(), os.Getgid())
	}
	uri := "nbd+unix:///d?socket=" + sock
	if !strings.Contains(s.stderr.String(), uri) {
		t.Errorf("the log does not give %s:\n%s", uri, s.stderr)
	}

	if out := runOK(t, "nbdinfo", "--size", uri); strings.TrimSpace(out) != fmt.Sprint(64<<20) {
		t.Errorf("nbdinfo --size over the socket: %s", out)
	}
	dir := t.TempDir()
	in, back := filepath.Join(dir, "in"), filepath.Join(dir, "back")
	data := make([]byte, 16<<20)
	rand.Read(data)
	if err := os.WriteFile(in, data, 0o600); err != nil {
		t.Fatal(err)
	}
	runOK(t, "nbdcopy", "--flush", in, uri)
	runOK(t, "nbdcopy", uri, back)
	// Through TCP too: one device behind both.
	runOK(t, "nbdcopy", s.uri("d"), back+".tcp")
	for _, f := range []string{back, back + ".tcp"} {
		if got, err := os.ReadFile(f); err != nil || !bytes.Equal(got[:len(data)], data) || !isZeros(got[len(data):]) {
			t.Fatalf("nbdcopy round trip (%s) differs (err %v)", filepath.Base(f), err)
		}
	}
	out := runOK(t, "fio", "--name=unix", "--ioengine=nbd", "--uri="+uri,
		"--rw=randwrite", "--bs=64k", "--iodepth=8", "--numjobs=2", "--size=8M", "--offset=32M",
		"--offset_increment=8M", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1",
		"--group_reporting", "--output-format=json", "--verify_state_save=0")
	if !strings.Contains(out, `"error" : 0`) {
		t.Fatalf("fio over the socket did not report success:\n%s", out)
	}

	s.stop(t)
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("the socket file is still there after a clean stop (%v)", err)
	}
}

// staleSocket leaves a socket file at path that nobody listens on, as a
// daemon that was killed does.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
}

// TestUnixSocketStart: a stale socket is replaced; a socket that answers,
// or a file that is no socket, stops the start with one line (exit 2) and
// is left alone.
func TestUnixSocketStart(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	staleSocket(t, stale)
	s := startServe(t, "--listen", "unix:"+stale, "--size", "16M", "--export", "d=mem://")
	runOK(t, "nbdinfo", "--size", "nbd+unix:///d?socket="+stale)
	info, err := os.Lstat(stale)
	if err != nil || info.Mode() != fs.ModeSocket|0o600 {
		t.Errorf("the new socket: %v, %v; want mode %v (the default)", info, err, fs.ModeSocket|0o600)
	}

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a live socket", []string{"--listen", "unix:" + stale}, stale + " is in use: another process answers on it"},
		{"a file", []string{"--listen", "unix:" + file}, file + " exists and is not a socket"},
		{"a missing directory", []string{"--listen", "unix:" + filepath.Join(dir, "no", "s.sock")}, "no such file or directory"},
		{"no path", []string{"--listen", "unix:"}, "no socket path after unix:"},
		{"a bad mode", []string{"--listen", "unix:" + filepath.Join(dir, "m.sock"), "--listen-mode", "rw"}, `--listen-mode "rw": want octal`},
		{"an unknown owner", []string{"--listen", "unix:" + filepath.Join(dir, "o.sock"), "--listen-owner", "no-such-user-objbacker"}, "no-such-user-objbacker"},
		{"an unknown group", []string{"--listen", "unix:" + filepath.Join(dir, "o.sock"), "--listen-owner", ":no-such-group-objbacker"}, "no-such-group-objbacker"},
		{"a mode without a socket", []string{"--listen", freeAddr(t), "--listen-mode", "0660"}, "--listen-mode applies to unix: listen addresses"},
		{"the second address taken", []string{"--listen", "unix:" + filepath.Join(dir, "first.sock"), "--listen", s.addr}, "address already in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, append(append([]string{"serve"}, tc.args...), "--size", "16M", "--export", "d=mem://")...)
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			if code != 2 || len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and one line saying %q", code, stderr, tc.want)
			}
		})
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me" {
		t.Errorf("the file in the way was changed: %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "first.sock")); !os.IsNotExist(err) {
		t.Errorf("a failed start left its first socket behind (%v)", err)
	}
	// The live daemon still serves on its socket.
	runOK(t, "nbdinfo", "--size", "nbd+unix:///d?socket="+stale)
}

// As root, --listen-owner gives the socket to another user and group,
// numbers with no name.
func TestUnixSocketOtherOwner(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("only root can give a file away")
	}
	path := filepath.Join(t.TempDir(), "s.sock")
	perm, err := parseSocketPerm("0640", "4242:4243")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := listenUnix(path, perm)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	info, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st := info.Sys().(*syscall.Stat_t); info.Mode() != fs.ModeSocket|0o640 || st.Uid != 4242 || st.Gid != 4243 {
		t.Errorf("socket %v owned by %d:%d; want %v owned by 4242:4243", info.Mode(), st.Uid, st.Gid, fs.ModeSocket|0o640)
	}
}

// A socket file replaced by another daemon's is not removed at exit.
func TestUnixSocketRemovedOnlyIfOurs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := listenUnix(path, socketPerm{mode: 0o600, uid: -1, gid: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	staleSocket(t, path) // another daemon's, say
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("the other socket was removed: %v", err)
	}
}

func TestNBDURI(t *testing.T) {
	tcp := func(addr string) *nbdListener {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return &nbdListener{Listener: fakeListener{a}}
	}
	for _, tc := range []struct {
		ln     *nbdListener
		export string
		tls    bool
		want   string
	}{
		{tcp("127.0.0.1:10809"), "disk0", false, "nbd://127.0.0.1:10809/disk0"},
		{tcp("0.0.0.0:10809"), "disk0", true, "nbds://localhost:10809/disk0"},
		{tcp("[::1]:10809"), "a b", false, "nbd://[::1]:10809/a%20b"},
		{&nbdListener{path: "/run/objbacker/nbd.sock"}, "disk0", false, "nbd+unix:///disk0?socket=/run/objbacker/nbd.sock"},
		{&nbdListener{path: "/tmp/a&b.sock"}, "d", true, "nbds+unix:///d?socket=/tmp/a%26b.sock"},
	} {
		if got := tc.ln.uri(tc.export, tc.tls); got != tc.want {
			t.Errorf("uri(%q, %v) = %s, want %s", tc.export, tc.tls, got, tc.want)
		}
	}
}

type fakeListener struct{ addr net.Addr }

func (fakeListener) Accept() (net.Conn, error) { return nil, net.ErrClosed }
func (fakeListener) Close() error              { return nil }
func (l fakeListener) Addr() net.Addr          { return l.addr }

// A relative socket path is made absolute, so the logged URI works from
// anywhere.
func TestUnixSocketRelativePath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	ln, err := listenUnix("rel.sock", socketPerm{mode: 0o600, uid: -1, gid: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if got, want := ln.uri("d", false), "nbd+unix:///d?socket="+filepath.Join(dir, "rel.sock"); got != want {
		t.Errorf("uri %s, want %s", got, want)
	}
}
