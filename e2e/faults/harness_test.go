package faults

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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
	m := &minio{bin: minioBinary(t), dir: t.TempDir(), addr: testenv.FreeAddr(t)}
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

// buildObjbacker builds the binary under test, without -race: the suite
// measures what a real daemon does under faults, at its real speed.
func buildObjbacker(t *testing.T) string {
	t.Helper()
	return testenv.BuildObjbacker(t, filepath.Join("..", ".."))
}

// daemon is one `objbacker serve` process (see testenv.Daemon) with one
// export, "d".
type daemon struct {
	*testenv.Daemon
	addr string
}

// spawnDaemon starts `objbacker serve` on a fresh loopback port, exporting
// url as "d" with the suite's geometry, without waiting for it to serve.
// It is killed when the test ends if it still runs.
func spawnDaemon(t *testing.T, bin, name, url string, extra ...string) *daemon {
	t.Helper()
	d := &daemon{addr: testenv.FreeAddr(t)}
	args := append([]string{"--log-format", "json", "serve", "--listen", d.addr, "--export", "d=" + url,
		"--size", fmt.Sprint(deviceSize), "--block-size", fmt.Sprint(blockSize), "--cache-size", fmt.Sprint(cacheSize)}, extra...)
	env := []string{"AWS_ACCESS_KEY_ID=" + minioUser, "AWS_SECRET_ACCESS_KEY=" + minioPassword,
		"AWS_REGION=us-east-1", "AWS_PROFILE=", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"}
	d.Daemon = testenv.SpawnDaemon(t, name, bin, args, env)
	return d
}

// startDaemon spawns a daemon and waits until its log says it serves; a
// daemon that exits first fails the test.
func startDaemon(t *testing.T, bin, name, url string, extra ...string) *daemon {
	t.Helper()
	d := spawnDaemon(t, bin, name, url, extra...)
	if err := d.WaitServing(t.Context(), time.Minute); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *daemon) uri() string { return "nbd://" + d.addr + "/d" }

// stopClean stops the daemon with SIGTERM, which must flush and exit 0.
func (d *daemon) stopClean(t *testing.T) {
	t.Helper()
	if st, _ := d.Stop(t, syscall.SIGTERM, 3*time.Minute); st.ExitCode() != 0 {
		t.Errorf("%s: SIGTERM gave %s, want exit 0 (flushed, stopped cleanly); log tail:\n%s", d.Name, st, d.Tail(30))
	}
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
