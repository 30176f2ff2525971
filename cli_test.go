package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/objbacker/objbacker/blockmap"
	"github.com/objbacker/objbacker/internal/testenv"
)

// runCLI runs the program to completion (commands that fail at start-up).
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(t.Context(), append([]string{"objbacker"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// TestBadInput: each mistake gets exit code 2 and one line that says what
// is wrong, before any client can connect.
func TestBadInput(t *testing.T) {
	recorded := fileURL(t, "recorded")
	if code, _, stderr := runCLI(t, "info", recorded); code != 0 {
		t.Fatalf("info on a fresh dir: %d %s", code, stderr)
	}
	typo := filepath.Join(t.TempDir(), "typo", "dir")
	// Record a 64 MiB device.
	s := startServe(t, "--size", "64M", "--export", "d="+recorded)
	s.stop(t)

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown scheme", []string{"serve", "--export", "d=ftp://host/x"}, `unknown scheme "ftp"`},
		{"no scheme", []string{"serve", "--export", "d=/tmp/x"}, "no scheme"},
		{"export without name", []string{"serve", "--export", "mem://"}, "want NAME=URL"},
		{"size not a multiple", []string{"serve", "--size", "1000000", "--export", "d=mem://"}, "not a multiple of the block size"},
		{"block size not a power of two", []string{"serve", "--size", "96M", "--block-size", "3M", "--export", "d=mem://"}, "not a power of two"},
		{"bad size", []string{"serve", "--size", "12X", "--export", "d=mem://"}, "--size"},
		{"size mismatch", []string{"serve", "--size", "128M", "--export", "d=" + recorded}, "does not match"},
		{"block size mismatch", []string{"serve", "--block-size", "4M", "--export", "d=" + recorded}, "does not match"},
		{"no size for a fresh bucket", []string{"serve", "--export", "d=mem://"}, "records no device size"},
		{"unknown flag", []string{"serve", "--sizee", "1G"}, "sizee"},
		{"unknown URL parameter", []string{"serve", "--export", "d=s3://bucket/p?endpont=http://x"}, `unknown parameter "endpont"`},
		{"size zero", []string{"serve", "--size", "0", "--export", "d=mem://"}, "--size 0: the size must be positive"},
		{"block size zero", []string{"serve", "--size", "64M", "--block-size", "0", "--export", "d=mem://"}, "--block-size 0: the size must be positive"},
		{"missing directory", []string{"serve", "--size", "64M", "--export", "d=file://" + typo}, typo + " does not exist; --create-dir creates it"},
		{"info of a missing directory", []string{"info", "file://" + typo}, typo + " does not exist"},
	}
	cases = append(cases, struct {
		name string
		args []string
		want string
	}{"missing bucket", nil, "no-such-bucket-objbacker"})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.args == nil {
				// Only this case needs MinIO.
				url := "s3://no-such-bucket-objbacker/vol?endpoint=" + testenv.S3Endpoint(t)
				tc.args = []string{"serve", "--size", "1G", "--export", "d=" + url}
			}
			args := tc.args
			if args[0] == "serve" {
				args = append(args, "--listen", freeAddr(t))
			}
			code, _, stderr := runCLI(t, args...)
			if code != 2 {
				t.Errorf("exit code %d, want 2; stderr:\n%s", code, stderr)
			}
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "objbacker: ") || !strings.Contains(last, tc.want) {
				t.Errorf("last stderr line %q does not say %q", last, tc.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Dir(typo)); !os.IsNotExist(err) {
		t.Errorf("a mistyped file:// directory was created (%v)", err)
	}
}

// TestAddressesCheckedFirst: a --listen or --metrics address that cannot
// be bound fails the start before any bucket is opened: the default
// export's directory is not created, a fresh bucket gets no size.
func TestAddressesCheckedFirst(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tc := range []struct{ name, flag string }{{"listen", "--listen"}, {"metrics", "--metrics"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			bucket := fileURL(t, "fresh")
			for _, export := range [][]string{nil, {"--size", "64M", "--export", "d=" + bucket}} {
				args := append([]string{"serve", "--listen", freeAddr(t), tc.flag, taken.Addr().String()}, export...)
				code, _, stderr := runCLI(t, args...)
				if code != 2 || !strings.Contains(stderr, tc.flag+" "+taken.Addr().String()) {
					t.Errorf("%v: exit %d, stderr %q; want exit 2 naming %s", args, code, stderr, tc.flag)
				}
			}
			if _, err := os.Stat("objbacker-data"); !os.IsNotExist(err) {
				t.Errorf("the default export's directory was created (%v)", err)
			}
			if entries, err := os.ReadDir(strings.TrimPrefix(bucket, "file://")); err != nil || len(entries) != 0 {
				t.Errorf("the fresh bucket holds %d objects (%v); want none", len(entries), err)
			}
		})
	}
}

// TestCreateDir: --create-dir creates a file:// export's directory.
func TestCreateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "disk")
	s := startServe(t, "--create-dir", "--size", "64M", "--export", "d=file://"+dir)
	s.stop(t)
	if _, err := os.Stat(filepath.Join(dir, blockmap.DescriptorKey)); err != nil {
		t.Fatalf("no device in the created directory: %v", err)
	}
}

// TestRestartKeepsDataAndSize: write, stop (SIGTERM), start again without
// --size: the size and the data are back. On file and S3 stores.
func TestRestartKeepsDataAndSize(t *testing.T) {
	for _, be := range backends {
		if !be.inspectable {
			continue // mem:// is gone with the process by design
		}
		t.Run(be.name, func(t *testing.T) {
			url := be.url(t, "restart")
			s := startServe(t, "--size", "96M", "--export", "d="+url)
			runOK(t, "qemu-io", "-f", "raw", s.uri("d"), "-c", "write -P 0x3c 1000000 3000000", "-c", "flush")
			s.stop(t)

			s = startServe(t, "--export", "d="+url)
			if out := strings.TrimSpace(runOK(t, "nbdinfo", "--size", s.uri("d"))); out != fmt.Sprint(96<<20) {
				t.Fatalf("size after restart: %s", out)
			}
			runOK(t, "qemu-io", "-f", "raw", "-r", s.uri("d"), "-c", "read -P 0x3c 1000000 3000000", "-c", "read -P 0 0 999936")
			code, out, _ := runCLI(t, "info", url)
			if code != 0 || !strings.Contains(out, "96M") || !strings.Contains(out, "blocks present: 4") {
				t.Fatalf("info after restart (exit %d):\n%s", code, out)
			}
		})
	}
}

// TestStopFlushesDirtyBlocks: a client that dies without FLUSH or
// disconnect leaves dirty blocks; stopping the server must store them.
func TestStopFlushesDirtyBlocks(t *testing.T) {
	url := fileURL(t, "dirty")
	s := startServe(t, "--size", "64M", "--write-delay", "1h", "--export", "d="+url)
	const script = `
import sys, nbd, os
h = nbd.NBD()
h.connect_uri(sys.argv[1])
h.pwrite(b"\x42" * 8192, 5 << 20)
os._exit(0)  # no flush, no disconnect
`
	python(t, script, s.uri("d"))
	if code := s.stop(t); code != 0 {
		t.Fatalf("stop: exit %d", code)
	}
	s = startServe(t, "--export", "d="+url)
	runOK(t, "qemu-io", "-f", "raw", "-r", s.uri("d"), "-c", "read -P 0x42 5242880 8192")
}

// TestDefaultServe: no flags serves disk0, 16 GiB, on ./objbacker-data.
func TestDefaultServe(t *testing.T) {
	t.Chdir(t.TempDir())
	s := startServe(t)
	if out := strings.TrimSpace(runOK(t, "nbdinfo", "--size", s.uri("disk0"))); out != fmt.Sprint(16<<30) {
		t.Fatalf("default export size %s", out)
	}
	if _, err := os.Stat(filepath.Join("objbacker-data", "disk0", "objbacker-device")); err != nil {
		t.Fatalf("default store not in ./objbacker-data/disk0: %v", err)
	}
	if uri := "uri=" + s.uri("disk0"); !strings.Contains(s.stderr.String(), uri) {
		t.Fatalf("the log does not give the client's URI %s:\n%s", uri, s.stderr)
	}
}
