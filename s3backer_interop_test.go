package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/objbacker/objbacker/blockmap"
	"github.com/objbacker/objbacker/internal/testenv"
)

// These tests run Debian's s3backer (FUSE) and objbacker on the same MinIO
// bucket, each reading what the other wrote, with sizes auto-detected.

const interopSize = 32 << 20

// s3backerMount is a running `s3backer -f` whose device is dir/file.
type s3backerMount struct {
	dir  string
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan error
}

// s3backerArgs are the flags that reach the test MinIO (no --region: with
// it, s3backer 1.5.4 uses virtual-host URLs that cannot resolve).
func s3backerArgs(t *testing.T, prefix string) []string {
	return []string{
		"--baseURL=" + testenv.S3Endpoint(t) + "/",
		"--accessId=" + os.Getenv("AWS_ACCESS_KEY_ID"),
		"--accessKey=" + os.Getenv("AWS_SECRET_ACCESS_KEY"),
		"--prefix=" + prefix,
	}
}

// startS3backer mounts bucket with s3backer; it fails the test, saying why,
// when s3backer cannot run here.
func startS3backer(t *testing.T, bucket, prefix string, extra ...string) (*s3backerMount, error) {
	t.Helper()
	bin := testenv.Command(t, "s3backer")
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testenv.Missing(t, "s3backer needs FUSE and /dev/fuse is unavailable: %v", err)
	}
	if os.Geteuid() != 0 {
		testenv.Missing(t, "s3backer's FUSE mount needs root here (euid %d)", os.Geteuid())
	}
	m := &s3backerMount{dir: t.TempDir(), log: &syncBuffer{}, done: make(chan error, 1)}
	args := append(append(s3backerArgs(t, prefix), "-f"), extra...)
	m.cmd = exec.Command(bin, append(args, bucket, m.dir)...)
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("starting s3backer: %v", err)
	}
	go func() { m.done <- m.cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-m.done:
			return nil, fmt.Errorf("s3backer exited (%v): %s", err, strings.TrimSpace(m.log.String()))
		default:
		}
		if _, err := os.Stat(filepath.Join(m.dir, "file")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			m.cmd.Process.Kill()
			t.Fatalf("s3backer did not mount within 30 s:\n%s", m.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() { m.unmount(t) })
	return m, nil
}

func mountS3backer(t *testing.T, bucket, prefix string, extra ...string) *s3backerMount {
	t.Helper()
	m, err := startS3backer(t, bucket, prefix, extra...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// unmount unmounts (s3backer flushes and clears its mount token) and waits.
func (m *s3backerMount) unmount(t *testing.T) {
	t.Helper()
	if m.done == nil {
		return
	}
	if out, err := exec.Command("umount", m.dir).CombinedOutput(); err != nil {
		t.Errorf("umount %s: %v: %s", m.dir, err, out)
		m.cmd.Process.Kill()
	}
	select {
	case <-m.done:
	case <-time.After(60 * time.Second):
		m.cmd.Process.Kill()
		t.Errorf("s3backer did not exit after umount:\n%s", m.log)
	}
	m.done = nil
}

func (m *s3backerMount) file() string { return filepath.Join(m.dir, "file") }

// writeFile writes data at the start of path and syncs it.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// compressible data: a random 256-byte run repeated per 4 KiB page, so
// deflate shrinks it and s3backer --compress really stores deflated blocks.
func compressible(n int) []byte {
	data := make([]byte, n)
	for page := 0; page < n; page += 4096 {
		rand.Read(data[page : page+256])
		for i := page + 256; i < page+4096; i += 256 {
			copy(data[i:i+256], data[page:page+256])
		}
	}
	return data
}

func randomData(n int) []byte {
	data := make([]byte, n)
	rand.Read(data)
	return data
}

// nbdcopyOut reads a whole export into memory.
func nbdcopyOut(t *testing.T, uri string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out.bin")
	runOK(t, "nbdcopy", uri, out)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func nbdcopyIn(t *testing.T, data []byte, uri string) {
	t.Helper()
	in := filepath.Join(t.TempDir(), "in.bin")
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	runOK(t, "nbdcopy", "--flush", in, uri)
}

func s3URL(t *testing.T, bucket, prefix, params string) string {
	u := fmt.Sprintf("s3://%s/%s?endpoint=%s", bucket, strings.TrimSuffix(prefix, "/"), testenv.S3Endpoint(t))
	if params != "" {
		u += "&" + params
	}
	return u
}

func TestS3backerWritesObjbackerReads(t *testing.T) {
	for _, tc := range []struct {
		name      string
		flags     []string
		data      func(int) []byte
		naming    blockmap.Naming
		wantCoded string
	}{
		{"plain", nil, randomData, blockmap.Naming{}, ""},
		{"hash prefix", []string{"--blockHashPrefix"}, randomData, blockmap.Naming{HashPrefix: true}, ""},
		{"compressed", []string{"--compress"}, compressible, blockmap.Naming{}, "deflate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bucket := testenv.NewS3Bucket(t)
			data := tc.data(interopSize)
			m := mountS3backer(t, bucket, "dev/", append([]string{"--blockSize=1M", fmt.Sprintf("--size=%d", interopSize)}, tc.flags...)...)
			writeFile(t, m.file(), data)
			m.unmount(t)

			url := s3URL(t, bucket, "dev/", "")
			st := openStore(t, url)
			a, err := st.Stat(t.Context(), tc.naming.Key(1))
			if err != nil {
				t.Fatalf("s3backer's block 1 (%s): %v", tc.naming.Key(1), err)
			}
			if a.ContentEncoding != tc.wantCoded {
				t.Fatalf("s3backer stored block 1 with Content-Encoding %q, want %q", a.ContentEncoding, tc.wantCoded)
			}

			s := startServe(t, "--export", "d="+url)
			if got := strings.TrimSpace(runOK(t, "nbdinfo", "--size", s.uri("d"))); got != fmt.Sprint(interopSize) {
				t.Fatalf("auto-detected size %s, want %d", got, interopSize)
			}
			if !bytes.Equal(nbdcopyOut(t, s.uri("d")), data) {
				t.Fatal("objbacker serves different bytes from what s3backer wrote")
			}
		})
	}
}

func TestObjbackerWritesS3backerReads(t *testing.T) {
	for _, tc := range []struct {
		name, params string
		flags        []string
	}{
		{"plain", "", nil},
		{"hash prefix", "hash_prefix=true", []string{"--blockHashPrefix"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bucket := testenv.NewS3Bucket(t)
			data := randomData(interopSize)
			s := startServe(t, "--size", fmt.Sprint(interopSize), "--export", "d="+s3URL(t, bucket, "dev/", tc.params))
			nbdcopyIn(t, data, s.uri("d"))
			s.stop(t)

			// No size flags: s3backer finds them on block 0, as it does in
			// its own buckets.
			m := mountS3backer(t, bucket, "dev/", tc.flags...)
			got, err := os.ReadFile(m.file())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("s3backer reads different bytes (%d of them) from what objbacker wrote (%d)", len(got), len(data))
			}
			if !strings.Contains(m.log.String(), "auto-detected") {
				t.Errorf("s3backer's log does not say it auto-detected the sizes:\n%s", m.log)
			}
		})
	}
}

func TestS3backerEncryptedBucketIsRefused(t *testing.T) {
	bucket := testenv.NewS3Bucket(t)
	m := mountS3backer(t, bucket, "dev/", "--blockSize=1M", "--size=8M", "--encrypt", "--password=not-for-objbacker")
	writeFile(t, m.file(), randomData(2<<20))
	m.unmount(t)
	code, _, stderr := runCLI(t, "serve", "--listen", freeAddr(t), "--export", "d="+s3URL(t, bucket, "dev/", ""))
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if last := lines[len(lines)-1]; code != 2 || !strings.Contains(last, "--encrypt") || !strings.HasPrefix(last, "objbacker: export d") {
		t.Fatalf("serve of an encrypted bucket: exit %d, last line %q", code, last)
	}
}

func TestMountMarkersAreShared(t *testing.T) {
	bucket := testenv.NewS3Bucket(t)
	url := s3URL(t, bucket, "dev/", "")
	m := mountS3backer(t, bucket, "dev/", "--blockSize=1M", "--size=8M")
	code, _, stderr := runCLI(t, "serve", "--listen", freeAddr(t), "--export", "d="+url)
	if code != 2 || !strings.Contains(stderr, "marked as mounted") {
		t.Fatalf("serve while s3backer has the bucket mounted: exit %d, %s", code, stderr)
	}
	m.unmount(t)

	s := startServe(t, "--size", "8M", "--export", "d="+url)
	if _, err := startS3backer(t, bucket, "dev/", "--blockSize=1M", "--size=8M"); err == nil || !strings.Contains(err.Error(), "already mounted") {
		t.Fatalf("s3backer mounted a bucket objbacker serves: %v", err)
	}
	s.stop(t)
}
