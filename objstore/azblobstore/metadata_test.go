package azblobstore

import (
	"maps"
	"regexp"
	"strings"
	"testing"
)

// csharpIdentifier is what Azure accepts as a metadata name (ASCII part).
var csharpIdentifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func TestMetadataNamesRoundTrip(t *testing.T) {
	meta := map[string]string{
		"s3backer-blocksize":   "1048576",
		"s3backer-filesize":    "1073741824",
		"s3backer-mount-token": "abc",
		"objbacker-version":    "1",
		"3d":                   "digit first",
		"-x":                   "dash first",
		"x-":                   "dash last",
		"a--b":                 "two dashes",
		"9":                    "one digit",
		"-":                    "one dash",
	}
	az, err := toAzure(meta)
	if err != nil {
		t.Fatalf("toAzure: %v", err)
	}
	if len(az) != len(meta) {
		t.Fatalf("toAzure mapped %d names to %d: two collided", len(meta), len(az))
	}
	for name := range az {
		if !csharpIdentifier.MatchString(name) {
			t.Errorf("Azure name %q is not a C# identifier", name)
		}
	}
	if got := fromAzure(az); !maps.Equal(got, meta) {
		t.Errorf("round trip gave %v; want %v", got, meta)
	}
	// Azure compares names without case, and HTTP hands them back
	// capitalised.
	upper := map[string]*string{}
	for name, v := range az {
		upper[strings.ToUpper(name[:1])+name[1:]] = v
	}
	if got := fromAzure(upper); !maps.Equal(got, meta) {
		t.Errorf("round trip through capitalised names gave %v; want %v", got, meta)
	}
}

func TestMetadataNamesAsStored(t *testing.T) {
	for name, want := range map[string]string{
		"s3backer-blocksize":   "s3backer_blocksize",
		"s3backer-mount-token": "s3backer_mount_token",
		"3d":                   "_3d",
		"-x":                   "__x",
	} {
		if got, err := azureName(name); got != want || err != nil {
			t.Errorf("azureName(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
}

func TestMetadataNamesRefused(t *testing.T) {
	for _, name := range []string{"", "Upper", "under_score", "dot.ted", "spa ce", "ümlaut"} {
		if _, err := toAzure(map[string]string{name: "v"}); err == nil {
			t.Errorf("toAzure accepted the name %q, which could not be read back as written", name)
		}
	}
}
