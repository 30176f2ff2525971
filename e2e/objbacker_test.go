//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/objbacker/objbacker/internal/testenv"
)

// buildObjbacker builds the binary under test, without -race: the guest
// is slow enough already.
func buildObjbacker(t *testing.T) string {
	t.Helper()
	return testenv.BuildObjbacker(t, "..")
}

// objbacker is one `objbacker serve` process (see testenv.Daemon). Its
// JSON log goes to a file in the test's artifact directory.
type objbacker struct {
	*testenv.Daemon
	port, metrics int
}

// startObjbacker runs `objbacker serve` on 127.0.0.1:port with the given
// exports (NAME=URL) and extra flags, and waits until its log says it
// serves; one that exits first fails the test with its log tail. The
// process is killed when the test ends if it still runs, and with the
// test binary (Pdeathsig) if that dies first.
func startObjbacker(t *testing.T, bin, name string, port int, exports []string, extra ...string) *objbacker {
	t.Helper()
	s := &objbacker{port: port, metrics: testenv.FreePort(t)}
	// The log level comes from OBJBACKER_LOG_LEVEL, so a run can ask for
	// debug logs without a code change.
	args := []string{"--log-format", "json", "serve",
		"--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--metrics", fmt.Sprintf("127.0.0.1:%d", s.metrics)}
	for _, e := range exports {
		args = append(args, "--export", e)
	}
	s.Daemon = testenv.StartDaemon(t, name, bin, append(args, extra...), nil)
	t.Logf("%s: pid %d serving %d exports on 127.0.0.1:%d, log %s", name, s.Pid(), len(exports), port, s.Log)
	return s
}

// runObjbacker runs a command that should end by itself within a minute,
// and returns its exit code and output.
func runObjbacker(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("objbacker %s still ran after a minute:\n%s", strings.Join(args, " "), out)
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("objbacker %s: %v", strings.Join(args, " "), err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// stop sends sig and waits for the process to end; a process that does not
// end within two minutes is killed and fails the test.
func (s *objbacker) stop(t *testing.T, sig syscall.Signal) *os.ProcessState {
	t.Helper()
	st, took := s.Stop(t, sig, 2*time.Minute)
	t.Logf("%s: %v -> %s after %.1f s", s.Name, sig, st, took.Seconds())
	return st
}

// stopClean stops the server with SIGTERM, which must flush everything
// and exit 0.
func (s *objbacker) stopClean(t *testing.T) {
	t.Helper()
	st := s.stop(t, syscall.SIGTERM)
	if st.ExitCode() != 0 || !bytes.Contains(s.LogBytes(), []byte(`"stopped cleanly"`)) {
		t.Fatalf("%s: SIGTERM gave %s, not a clean stop; log tail:\n%s", s.Name, st, s.Tail(40))
	}
}

// connections counts, per export, the NBD connections that selected it.
func (s *objbacker) connections() map[string]int {
	counts := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(s.LogBytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec struct{ Msg, Export string }
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "nbd: export selected" {
			counts[rec.Export]++
		}
	}
	return counts
}

// requireConnections fails the test unless each export was attached with
// exactly n connections (nbd-client -C n).
func (s *objbacker) requireConnections(t *testing.T, exports []string, n int) {
	t.Helper()
	got := s.connections()
	for _, name := range exports {
		if got[name] != n {
			t.Errorf("%s: export %s had %d connections, want %d (nbd-client -C %d)", s.Name, name, got[name], n, n)
		}
	}
	t.Logf("%s: connections per export: %v", s.Name, got)
}

// metricsOf reads /metrics: export -> metric name -> value.
func (s *objbacker) metricsOf() (map[string]map[string]int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/metrics", s.metrics), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(resp.Status)
	}
	out := map[string]map[string]int64{}
	for _, line := range strings.Split(string(body), "\n") {
		// name{export="disk0"} 123
		name, rest, ok := strings.Cut(line, `{export="`)
		if !ok {
			continue
		}
		export, value, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		// Large values come as 1.048576e+06.
		f, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		v := int64(f)
		if out[export] == nil {
			out[export] = map[string]int64{}
		}
		out[export][strings.TrimPrefix(name, "objbacker_")] = v
	}
	return out, nil
}

// reportMetrics logs what the guest's I/O cost each export, and fails the
// test on failed uploads.
func (s *objbacker) reportMetrics(t *testing.T, exports []string) {
	t.Helper()
	m, err := s.metricsOf()
	if err != nil {
		t.Errorf("%s: reading metrics: %v", s.Name, err)
		return
	}
	for _, name := range exports {
		e := m[name]
		t.Logf("%s: %s: %d reads (%d MiB), %d writes (%d MiB), %d flushes, %d trims; store: %d GETs, %d PUTs, %d DELETEs, %d errors; %d stalls, %d upload errors, %d blocks present, %d dirty",
			s.Name, name, e["read_requests_total"], e["read_bytes_total"]>>20, e["write_requests_total"], e["written_bytes_total"]>>20,
			e["flush_requests_total"], e["trim_requests_total"], e["store_gets_total"], e["store_puts_total"],
			e["store_deletes_total"], e["store_errors_total"], e["writer_stalls_total"], e["upload_errors_total"], e["blocks_present"], e["dirty_blocks"])
		if e["upload_errors_total"] != 0 {
			t.Errorf("%s: export %s: %d uploads failed", s.Name, name, e["upload_errors_total"])
		}
	}
}
