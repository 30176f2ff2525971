//go:build linux

package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/objbacker/objbacker/internal/testenv"
)

// TestServe runs the harness's daemon on the host, without the guest:
// objbacker serve with an export in each emulator (MinIO, fake-gcs-server,
// Azurite) counts as started once its log says it serves; each export
// answers nbdinfo, which the log and the metrics show; SIGTERM stops it
// cleanly.
func TestServe(t *testing.T) {
	exports := []string{
		"s3=" + testenv.S3URL(t, "vol"),
		"gcs=" + testenv.GCSURL(t, "vol"),
		"azure=" + testenv.AzureURL(t, "vol"),
	}
	nbdinfo := testenv.Command(t, "nbdinfo")
	bin := buildObjbacker(t)
	port := testenv.FreePort(t)
	s := startObjbacker(t, bin, "objbacker", port, exports, "--size", "64M")
	var names []string
	for _, e := range exports {
		name, _, _ := strings.Cut(e, "=")
		names = append(names, name)
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		out, err := exec.CommandContext(ctx, nbdinfo, "--size", fmt.Sprintf("nbd://127.0.0.1:%d/%s", port, name)).CombinedOutput()
		cancel()
		if got := strings.TrimSpace(string(out)); err != nil || got != fmt.Sprint(64<<20) {
			t.Errorf("nbdinfo --size on export %s: %v, %q; want %d; log tail:\n%s", name, err, got, 64<<20, s.Tail(20))
		}
	}
	s.requireConnections(t, names, 1)
	s.reportMetrics(t, names)
	s.stopClean(t)
}
