//go:build linux

package e2e

import (
	"bytes"
	"path/filepath"
	"sort"
	"testing"

	"github.com/objbacker/objbacker/internal/testcert"
)

// guestTLS makes a CA, a server certificate and a client certificate,
// puts the client's files into the guest's initramfs at /e2e/tls (where
// the guest's attach finds them with e2e.tls=1), and returns the flags
// that make objbacker serve require TLS with that client certificate.
func guestTLS(t *testing.T, v *vm) []string {
	t.Helper()
	ca := testcert.NewCA(t, "e2e CA")
	// The guest dials 10.0.2.2 and checks the name localhost
	// (-tlshostname), which the server certificate carries.
	server, client := ca.Server(t), ca.Client(t, "e2e guest")
	dir := t.TempDir()
	files := map[string][]byte{
		"server-cert.pem": server.CertPEM, "server-key.pem": server.KeyPEM, "ca-cert.pem": ca.CertPEM,
	}
	for name, data := range files {
		testcert.Write(t, filepath.Join(dir, name), data)
	}
	if err := appendFiles(v.initrd, "e2e/tls", map[string][]byte{
		"ca-cert.pem": ca.CertPEM, "client-cert.pem": client.CertPEM, "client-key.pem": client.KeyPEM,
	}); err != nil {
		t.Fatalf("adding the TLS files to the initramfs: %v", err)
	}
	return []string{"--tls", "require", "--tls-cert", filepath.Join(dir, "server-cert.pem"),
		"--tls-key", filepath.Join(dir, "server-key.pem"), "--tls-client-ca", filepath.Join(dir, "ca-cert.pem")}
}

// appendFiles appends a cpio archive with files in the directory dir to
// the packed initramfs.
func appendFiles(initrd, dir string, files map[string][]byte) error {
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	return appendCpio(initrd, func(c *cpioWriter) {
		c.add(dir, cpioDir|0o700, nil)
		for _, name := range names {
			c.add(dir+"/"+name, cpioFile|0o600, files[name])
		}
	})
}

// requireTLS fails the test unless at least n connections came in TLS
// with the guest's client certificate.
func (s *objbacker) requireTLS(t *testing.T, n int) {
	t.Helper()
	got := bytes.Count(s.LogBytes(), []byte(`"client":"CN=e2e guest`))
	if got < n {
		t.Errorf("%d connections in TLS with the guest's certificate, want %d", got, n)
	}
	t.Logf("%d connections in TLS with the guest's client certificate", got)
}
