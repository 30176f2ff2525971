package azblobstore

import (
	"fmt"
	"strings"
)

// Azure accepts only C# identifiers as metadata names (letters, digits and
// '_', not starting with a digit), and compares them without case. The
// names the block core records, such as "s3backer-blocksize" and
// "s3backer-mount-token", are lower-case letters, digits and dashes
// (objstore.PutOptions). This file is the one place that maps between the
// two, reversibly:
//
//   - each '-' becomes '_': "s3backer-blocksize" is "s3backer_blocksize";
//   - a name that starts with a digit or a dash gets one more '_' in front,
//     which makes it an identifier: "3d" is "_3d", "-x" is "__x".
//
// So a stored name starts with '_' exactly when the escape was added, and
// reading strips it. Names come back from Azure in whatever case HTTP gave
// them ("S3backer_blocksize"), and are lower-cased first.

// toAzure maps the core's metadata to Azure's, or refuses a name outside
// the core's alphabet, which could not be mapped back.
func toAzure(meta map[string]string) (map[string]*string, error) {
	if len(meta) == 0 {
		return nil, nil
	}
	out := make(map[string]*string, len(meta))
	for name, value := range meta {
		azName, err := azureName(name)
		if err != nil {
			return nil, err
		}
		out[azName] = &value
	}
	return out, nil
}

// fromAzure maps metadata read from Azure back to the core's names.
func fromAzure(meta map[string]*string) map[string]string {
	if len(meta) == 0 {
		return nil
	}
	out := make(map[string]string, len(meta))
	for azName, value := range meta {
		if value != nil {
			out[coreName(azName)] = *value
		}
	}
	return out
}

func azureName(name string) (string, error) {
	if name == "" || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
		return "", fmt.Errorf("metadata name %q: want lower-case letters, digits and dashes", name)
	}
	azName := strings.ReplaceAll(name, "-", "_")
	if c := name[0]; c == '-' || ('0' <= c && c <= '9') {
		azName = "_" + azName
	}
	return azName, nil
}

func coreName(azName string) string {
	name := strings.ToLower(azName)
	name = strings.TrimPrefix(name, "_")
	return strings.ReplaceAll(name, "_", "-")
}
