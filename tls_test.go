package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/objbacker/objbacker/internal/testcert"
)

// tlsFiles writes a server certificate and key signed by ca into dir and
// returns the --tls-cert and --tls-key flags for them.
func writeServerCert(t *testing.T, ca *testcert.CA, dir string) []string {
	t.Helper()
	p := ca.Server(t)
	cert, key := filepath.Join(dir, "server-cert.pem"), filepath.Join(dir, "server-key.pem")
	testcert.Write(t, cert, p.CertPEM)
	testcert.Write(t, key, p.KeyPEM)
	return []string{"--tls-cert", cert, "--tls-key", key}
}

// nbds is the libnbd URI of export over TLS with the client files in dir.
func (s *server) nbds(export, dir string) string {
	return "nbds://" + s.addr + "/" + export + "?tls-certificates=" + dir
}

// qemuTLS is qemu's arguments for export over TLS with the client files
// in dir: an --object and the image options that use it.
func (s *server) qemuTLS(export, dir string) (object, image string) {
	host, port, _ := strings.Cut(s.addr, ":")
	return "tls-creds-x509,id=tls0,endpoint=client,verify-peer=on,dir=" + dir,
		fmt.Sprintf("driver=nbd,host=%s,port=%s,export=%s,tls-creds=tls0", host, port, export)
}

// runFails runs a client that must fail and returns its output.
func runFails(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := command(t, name, args...).CombinedOutput()
	if err == nil {
		t.Fatalf("%s %s succeeded; want it refused\n%s", name, strings.Join(args, " "), out)
	}
	return string(out)
}

// TestTLSClients: nbdinfo, nbdcopy and qemu-img over TLS (TCP and a Unix
// socket) with mutual TLS required; clients without TLS, without a client
// certificate or with one from another CA are refused.
func TestTLSClients(t *testing.T) {
	serverCA, clientCA, otherCA := testcert.NewCA(t, "server CA"), testcert.NewCA(t, "client CA"), testcert.NewCA(t, "other CA")
	dir := t.TempDir()
	testcert.Write(t, filepath.Join(dir, "client-ca.pem"), clientCA.CertPEM)
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	args := append(writeServerCert(t, serverCA, dir), "--tls", "require", "--tls-client-ca", filepath.Join(dir, "client-ca.pem"),
		"--listen", "unix:"+sock, "--size", "64M", "--export", "d=mem://")
	// Served on startServe's --listen, TCP, and on the socket.
	s := startServe(t, args...)
	if log := s.stderr.String(); !strings.Contains(log, "uri=nbds://"+s.addr+"/d ") || !strings.Contains(log, "nbds+unix:///d?socket="+sock) {
		t.Errorf("the log does not give the nbds:// and nbds+unix:// URIs:\n%s", log)
	}

	good := clientCA.Client(t, "client")
	goodDir := testcert.ClientDir(t, serverCA, &good)

	// nbdinfo over TCP and over the socket.
	out := runOK(t, "nbdinfo", s.nbds("d", goodDir))
	if !strings.Contains(out, "with TLS") || !strings.Contains(out, "export-size: 67108864") {
		t.Errorf("nbdinfo over TLS:\n%s", out)
	}
	out = runOK(t, "nbdinfo", "nbds+unix:///d?socket="+sock+"&tls-certificates="+goodDir)
	if !strings.Contains(out, "with TLS") {
		t.Errorf("nbdinfo over TLS on the Unix socket:\n%s", out)
	}

	// nbdcopy in and out: 16 MiB of random bytes.
	tmp := t.TempDir()
	in, back := filepath.Join(tmp, "in"), filepath.Join(tmp, "back")
	data := make([]byte, 16<<20)
	rand.Read(data)
	if err := os.WriteFile(in, data, 0o600); err != nil {
		t.Fatal(err)
	}
	runOK(t, "nbdcopy", "--flush", in, s.nbds("d", goodDir))
	runOK(t, "nbdcopy", s.nbds("d", goodDir), back)
	if got, err := os.ReadFile(back); err != nil || !bytes.Equal(got[:len(data)], data) || !isZeros(got[len(data):]) {
		t.Fatalf("nbdcopy over TLS: the round trip differs (err %v)", err)
	}

	// qemu-img reads what nbdcopy wrote, and writes an image of its own.
	object, image := s.qemuTLS("d", testcert.ClientDir(t, serverCA, &good, clientCA))
	qemuOut := filepath.Join(tmp, "qemu")
	runOK(t, "qemu-img", "convert", "--object", object, "--image-opts", image, "-O", "raw", qemuOut)
	if got, err := os.ReadFile(qemuOut); err != nil || !bytes.Equal(got[:len(data)], data) {
		t.Fatalf("qemu-img convert from the export over TLS: differs (err %v)", err)
	}
	pattern := bytes.Repeat([]byte{0xa5}, 4<<20)
	if err := os.WriteFile(in, pattern, 0o600); err != nil {
		t.Fatal(err)
	}
	runOK(t, "qemu-img", "convert", "-n", "--object", object, "-f", "raw", in, "--target-image-opts", image)
	runOK(t, "nbdcopy", s.nbds("d", goodDir), back)
	if got, _ := os.ReadFile(back); !bytes.Equal(got[:4<<20], pattern) || !bytes.Equal(got[4<<20:len(data)], data[4<<20:]) {
		t.Fatal("qemu-img's write over TLS is not what nbdcopy reads back")
	}

	// nbd-client, the kernel's client, here only listing the exports: that
	// needs no nbd module, and is the same handshake and TLS.
	host, port, _ := strings.Cut(s.addr, ":")
	out = runOK(t, "nbd-client", "-l", host, port, "-cacertfile", filepath.Join(goodDir, "ca-cert.pem"),
		"-certfile", filepath.Join(goodDir, "client-cert.pem"), "-keyfile", filepath.Join(goodDir, "client-key.pem"), "-tlshostname", "localhost")
	if !strings.Contains(out, "d: objbacker mem:") {
		t.Errorf("nbd-client -l over TLS:\n%s", out)
	}

	// Refusals.
	if out := runFails(t, "nbd-client", "-l", host, port); !strings.Contains(out, "TLS is required") {
		t.Errorf("nbd-client without TLS: refused, but not for TLS:\n%s", out)
	}
	if out := runFails(t, "nbdinfo", "nbd://"+s.addr+"/d"); !strings.Contains(out, "TLS") {
		t.Errorf("nbdinfo without TLS: refused, but not for TLS:\n%s", out)
	}
	if out := runFails(t, "nbdinfo", "nbd+unix:///d?socket="+sock); !strings.Contains(out, "TLS") {
		t.Errorf("nbdinfo without TLS on the socket: refused, but not for TLS:\n%s", out)
	}
	runFails(t, "qemu-img", "info", "nbd://"+s.addr+"/d")
	runFails(t, "nbdinfo", s.nbds("d", testcert.ClientDir(t, serverCA, nil)))
	foreign := otherCA.Client(t, "intruder")
	runFails(t, "nbdinfo", s.nbds("d", testcert.ClientDir(t, serverCA, &foreign)))
	object, image = s.qemuTLS("d", testcert.ClientDir(t, serverCA, &foreign, otherCA))
	runFails(t, "qemu-img", "info", "--object", object, "--image-opts", image)
	// The server's certificate must be trusted by the client too.
	untrusting := clientCA.Client(t, "client")
	runFails(t, "nbdinfo", s.nbds("d", testcert.ClientDir(t, otherCA, &untrusting)))
	// GnuTLS sends no certificate the server's CA list does not name, so
	// the foreign ones never left the clients (the nbd package's tests
	// send one anyway: TestTLSClientCertificates).
	if log := s.stderr.String(); !strings.Contains(log, "client didn't provide a certificate") {
		t.Errorf("the log does not say why the clients were refused:\n%s", log)
	}
}

// TestTLSOn: with --tls on, clients with and without TLS both get in.
func TestTLSOn(t *testing.T) {
	ca := testcert.NewCA(t, "server CA")
	s := startServe(t, append(writeServerCert(t, ca, t.TempDir()), "--tls", "on", "--size", "16M", "--export", "d=mem://")...)
	if out := runOK(t, "nbdinfo", s.uri("d")); !strings.Contains(out, "without TLS") {
		t.Errorf("nbdinfo nbd://:\n%s", out)
	}
	if out := runOK(t, "nbdinfo", s.nbds("d", testcert.ClientDir(t, ca, nil))); !strings.Contains(out, "with TLS") {
		t.Errorf("nbdinfo nbds://:\n%s", out)
	}
}

// TestTLSReload: SIGHUP replaces the certificate for the next clients; a
// bad file keeps the previous one and logs why.
func TestTLSReload(t *testing.T) {
	oldCA, newCA := testcert.NewCA(t, "old CA"), testcert.NewCA(t, "new CA")
	dir := t.TempDir()
	flags := writeServerCert(t, oldCA, dir)
	s := startServe(t, append(flags, "--tls", "require", "--size", "16M", "--export", "d=mem://")...)
	oldDir, newDir := testcert.ClientDir(t, oldCA, nil), testcert.ClientDir(t, newCA, nil)
	runOK(t, "nbdinfo", "--size", s.nbds("d", oldDir))

	hup := func(want string, n int) {
		t.Helper()
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); strings.Count(s.stderr.String(), want) < n; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log after SIGHUP:\n%s", want, s.stderr)
			}
		}
	}
	writeServerCert(t, newCA, dir)
	hup("TLS files reloaded", 1)
	runOK(t, "nbdinfo", "--size", s.nbds("d", newDir))
	runFails(t, "nbdinfo", "--size", s.nbds("d", oldDir))

	// A key that does not match, then a certificate that is not PEM.
	other := oldCA.Server(t)
	testcert.Write(t, filepath.Join(dir, "server-key.pem"), other.KeyPEM)
	hup("TLS files not reloaded", 1)
	runOK(t, "nbdinfo", "--size", s.nbds("d", newDir))
	testcert.Write(t, filepath.Join(dir, "server-cert.pem"), []byte("garbage"))
	hup("TLS files not reloaded", 2)
	runOK(t, "nbdinfo", "--size", s.nbds("d", newDir))
	if n := strings.Count(s.stderr.String(), "TLS files reloaded"); n != 1 {
		t.Errorf("%d reloads logged, want 1", n)
	}
}

// TestTLSBadFlags: each mistake is exit 2 and one line naming it.
func TestTLSBadFlags(t *testing.T) {
	ca := testcert.NewCA(t, "CA")
	dir := t.TempDir()
	cert := writeServerCert(t, ca, dir)
	garbage := filepath.Join(dir, "garbage.pem")
	testcert.Write(t, garbage, []byte("not PEM"))
	unreadable := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad mode", []string{"--tls", "yes"}, `--tls "yes": want off, on or require`},
		{"require without a certificate", []string{"--tls", "require"}, "--tls require needs --tls-cert and --tls-key"},
		{"certificate without a key", []string{"--tls", "on", "--tls-cert", cert[1]}, "--tls-cert is set without --tls-key"},
		{"key without a certificate", []string{"--tls", "on", "--tls-key", cert[3]}, "--tls-key is set without --tls-cert"},
		{"certificate with TLS off", cert, "--tls-cert is set but --tls is off"},
		{"unreadable certificate", []string{"--tls", "on", "--tls-cert", unreadable, "--tls-key", cert[3]}, "--tls-cert: open " + unreadable},
		{"certificate not PEM", []string{"--tls", "on", "--tls-cert", garbage, "--tls-key", cert[3]}, "--tls-cert " + garbage + " with --tls-key"},
		{"key of another certificate", []string{"--tls", "on", "--tls-cert", cert[1], "--tls-key", garbage}, "--tls-key " + garbage},
		{"client CA unreadable", append([]string{"--tls", "on", "--tls-client-ca", unreadable}, cert...), "--tls-client-ca: open " + unreadable},
		{"client CA not PEM", append([]string{"--tls", "on", "--tls-client-ca", garbage}, cert...), "--tls-client-ca " + garbage + ": no PEM certificate"},
		{"client CA is a key", append([]string{"--tls", "on", "--tls-client-ca", cert[3]}, cert...), "holds a PRIVATE KEY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"serve", "--listen", freeAddr(t), "--size", "16M", "--export", "d=mem://"}, tc.args...)
			code, _, stderr := runCLI(t, args...)
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			if code != 2 || len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and one line saying %q", code, stderr, tc.want)
			}
		})
	}
}
