package main

import (
	"encoding/json"
	"testing"

	"github.com/objbacker/objbacker/blockmap"
)

// exportIncarnation reads an export's incarnation tag as a client sees it:
// nbdinfo's description of the export.
func exportIncarnation(t *testing.T, s *server, export string) (token, continues string) {
	t.Helper()
	out := runOK(t, "nbdinfo", "--json", s.uri(export))
	var info struct {
		Exports []struct {
			Description string `json:"description"`
		} `json:"exports"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil || len(info.Exports) != 1 {
		t.Fatalf("nbdinfo --json: %v\n%s", err, out)
	}
	token, continues, ok := blockmap.ParseIncarnationTag(info.Exports[0].Description)
	if !ok {
		t.Fatalf("description %q has no incarnation tag", info.Exports[0].Description)
	}
	return token, continues
}

// TestRestartContinuesTheIncarnation: a serve stopped cleanly (SIGTERM) is
// continued by the next one on the bucket, which the export's description
// tells an attached client.
func TestRestartContinuesTheIncarnation(t *testing.T) {
	url := fileURL(t, "d")
	first := startServe(t, "--export", "d="+url, "--size", "64M")
	token, continues := exportIncarnation(t, first, "d")
	if continues != "" {
		t.Fatalf("a fresh bucket's first device continues %q", continues)
	}
	if code := first.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	second := startServe(t, "--export", "d="+url)
	next, continues := exportIncarnation(t, second, "d")
	if next == token || continues != token {
		t.Fatalf("after a clean stop of %s: incarnation %s continuing %q", token, next, continues)
	}
}
