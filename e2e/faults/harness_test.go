package faults

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/objbacker/objbacker/internal/testenv"
)

// The suite's own MinIO, which it may SIGKILL and restart, with fixed
// test-only credentials: it is on loopback and lives for one run.
const (
	minioUser     = "objbacker-faults"
	minioPassword = "objbacker-faults-secret"
)

// minioBinary is the MinIO scripts/deps.sh installs.
func minioBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("OBJBACKER_MINIO")
	if bin == "" {
		cache := os.Getenv("OBJBACKER_CACHE")
		if cache == "" {
			home, _ := os.UserHomeDir()
			cache = filepath.Join(home, ".cache", "objbacker")
		}
		bin = filepath.Join(cache, "bin", "minio")
	}
	if _, err := os.Stat(bin); err != nil {
		testenv.Missing(t, "MinIO (scripts/deps.sh installs it): %v", err)
	}
	return bin
}

// minio is one MinIO server process on a data directory and port that
// outlive it, so that it can be killed and started again.
type minio struct {
	bin, dir, addr string
	log            *os.File

	// mu guards the process, which a scenario may kill and start again
	// from another goroutine while the test's cleanup may kill it.
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

func startMinio(t *testing.T) *minio {
	t.Helper()
	m := &minio{bin: minioBinary(t), dir: t.TempDir(), addr: freeAddr(t)}
	var err error
	if m.log, err = os.Create(filepath.Join(t.ArtifactDir(), "minio.log")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.kill()
		m.log.Close()
	})
	if err := m.start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return m
}

func (m *minio) endpoint() string { return "http://" + m.addr }

// start runs MinIO and waits until it reports itself live.
func (m *minio) start(ctx context.Context) error {
	cmd := exec.Command(m.bin, "server", "--address", m.addr, m.dir)
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+minioUser, "MINIO_ROOT_PASSWORD="+minioPassword,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off")
	cmd.Stdout, cmd.Stderr = m.log, m.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting MinIO: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	m.mu.Lock()
	m.cmd, m.exited = cmd, exited
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.endpoint()+"/minio/health/live", nil)
		req.Close = true
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("MinIO exited at start-up (%s); see %s", cmd.ProcessState, m.log.Name())
		case <-ctx.Done():
			m.kill()
			return fmt.Errorf("MinIO not live within 60 s; see %s", m.log.Name())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// kill SIGKILLs MinIO, as a crash or an OOM kill would, and waits for it.
func (m *minio) kill() {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-exited
}

// s3Client talks to MinIO directly, never through a proxy: the suite's
// own view of the bucket.
func (m *minio) s3Client(t *testing.T) *s3.Client {
	transport := &http.Transport{Proxy: nil}
	t.Cleanup(transport.CloseIdleConnections)
	return s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(m.endpoint()),
		UsePathStyle: true,
		HTTPClient:   &http.Client{Transport: transport, Timeout: time.Minute},
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: minioUser, SecretAccessKey: minioPassword}, nil
		}),
	})
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// buildObjbacker builds the binary under test, without -race: the suite
// measures what a real daemon does under faults, at its real speed.
func buildObjbacker(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "objbacker")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Command(t, "go"), "build", "-o", bin, ".")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// daemon is one `objbacker serve` process with one export, "d".
type daemon struct {
	name, addr string
	log        string
	cmd        *exec.Cmd
	exited     chan struct{}
}

// spawnDaemon starts `objbacker serve` on a fresh loopback port, exporting
// url as "d" with the suite's geometry, without waiting for it to listen.
// It is killed when the test ends if it still runs.
func spawnDaemon(t *testing.T, bin, name, url string, extra ...string) *daemon {
	t.Helper()
	d := &daemon{name: name, addr: freeAddr(t), log: filepath.Join(t.ArtifactDir(), name+".log"), exited: make(chan struct{})}
	logFile, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	args := append([]string{"--log-format", "json", "serve", "--listen", d.addr, "--export", "d=" + url,
		"--size", fmt.Sprint(deviceSize), "--block-size", fmt.Sprint(blockSize), "--cache-size", fmt.Sprint(cacheSize)}, extra...)
	d.cmd = exec.Command(bin, args...)
	d.cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+minioUser, "AWS_SECRET_ACCESS_KEY="+minioPassword,
		"AWS_REGION=us-east-1", "AWS_PROFILE=", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
	d.cmd.Stdout, d.cmd.Stderr = logFile, logFile
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting objbacker: %v", err)
	}
	go func() {
		d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		if d.running() {
			d.cmd.Process.Kill()
			<-d.exited
		}
	})
	return d
}

// startDaemon spawns a daemon and waits until it accepts clients; a daemon
// that exits first fails the test.
func startDaemon(t *testing.T, bin, name, url string, extra ...string) *daemon {
	t.Helper()
	d := spawnDaemon(t, bin, name, url, extra...)
	if err := d.waitListening(t.Context(), time.Minute); err != nil {
		t.Fatal(err)
	}
	return d
}

// waitListening waits until the daemon serves, as its log says, or fails
// if it exits or the time is up. A connection it accepts says nothing:
// serve binds its address before it opens the exports, so that a taken
// one fails first.
func (d *daemon) waitListening(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		if b, err := os.ReadFile(d.log); err == nil && bytes.Contains(b, []byte(`"msg":"serving"`)) {
			return nil
		}
		select {
		case <-d.exited:
			return fmt.Errorf("%s exited (%s) before listening; log tail:\n%s", d.name, d.cmd.ProcessState, d.tail(30))
		case <-ctx.Done():
			return fmt.Errorf("%s not listening within %v; log tail:\n%s", d.name, limit, d.tail(30))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (d *daemon) uri() string { return "nbd://" + d.addr + "/d" }

func (d *daemon) running() bool {
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// stop sends sig and returns the exit code (-1 for death by signal) and
// how long the exit took; an exit slower than limit fails the test.
func (d *daemon) stop(t *testing.T, sig syscall.Signal, limit time.Duration) (int, time.Duration) {
	t.Helper()
	d.cmd.Process.Signal(sig)
	return d.wait(t, limit)
}

// wait waits for a daemon already told to stop (a second signal would
// make it exit at once, unflushed) and returns its exit code and how long
// the wait took; one that outlives limit is killed and fails the test.
func (d *daemon) wait(t *testing.T, limit time.Duration) (int, time.Duration) {
	t.Helper()
	begin := time.Now()
	select {
	case <-d.exited:
	case <-time.After(limit):
		d.cmd.Process.Kill()
		<-d.exited
		t.Fatalf("%s did not exit within %v; log tail:\n%s", d.name, limit, d.tail(30))
	}
	return d.cmd.ProcessState.ExitCode(), time.Since(begin)
}

// stopClean stops the daemon with SIGTERM, which must flush and exit 0.
func (d *daemon) stopClean(t *testing.T) {
	t.Helper()
	if code, _ := d.stop(t, syscall.SIGTERM, 3*time.Minute); code != 0 {
		t.Errorf("%s: SIGTERM gave exit %d, want 0 (flushed, stopped cleanly); log tail:\n%s", d.name, code, d.tail(30))
	}
}

func (d *daemon) tail(n int) string {
	b, _ := os.ReadFile(d.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// newBucket creates an empty bucket on MinIO, removed with its objects at
// the end of the test.
func newBucket(t *testing.T, client *s3.Client, name string) string {
	t.Helper()
	if _, err := client.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatalf("creating bucket %s: %v", name, err)
	}
	t.Cleanup(func() {
		// t.Context() is already canceled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		keys, err := listKeys(ctx, client, name, "")
		for _, k := range keys {
			if err == nil {
				_, err = client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &name, Key: &k})
			}
		}
		if err == nil {
			_, err = client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &name})
		}
		if err != nil {
			t.Logf("removing bucket %s: %v", name, err)
		}
	})
	return name
}

func listKeys(ctx context.Context, client *s3.Client, bucket, prefix string) ([]string, error) {
	var keys []string
	pages := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			keys = append(keys, *o.Key)
		}
	}
	return keys, nil
}

func getObject(ctx context.Context, client *s3.Client, bucket, key string) ([]byte, error) {
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}
