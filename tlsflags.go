package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"
)

// tlsFlags are serve's flags for TLS (NBD_OPT_STARTTLS).
func tlsFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "tls", Value: "off", Usage: "TLS for NBD clients: off, on (clients choose) or require (every client must use TLS)", EnvVars: []string{"OBJBACKER_TLS"}},
		&cli.StringFlag{Name: "tls-cert", Usage: "server certificate `FILE` (PEM; the chain after the certificate); re-read on SIGHUP", EnvVars: []string{"OBJBACKER_TLS_CERT"}},
		&cli.StringFlag{Name: "tls-key", Usage: "private key `FILE` of --tls-cert (PEM); re-read on SIGHUP", EnvVars: []string{"OBJBACKER_TLS_KEY"}},
		&cli.StringFlag{Name: "tls-client-ca", Usage: "CA certificates `FILE` (PEM): clients must present a certificate it signed (mutual TLS); re-read on SIGHUP", EnvVars: []string{"OBJBACKER_TLS_CLIENT_CA"}},
	}
}

// tlsSetup is serve's TLS: off (nil), or files whose current contents
// give each new connection its configuration.
type tlsSetup struct {
	required bool
	files    tlsFiles
	current  atomic.Pointer[tls.Config]
}

// tlsFiles name what --tls-cert, --tls-key and --tls-client-ca read.
type tlsFiles struct{ cert, key, clientCA string }

// parseTLSFlags checks the TLS flags and loads the files: a bad flag or
// file is bad input (exit 2), said in one line.
func parseTLSFlags(c *cli.Context) (*tlsSetup, error) {
	files := tlsFiles{cert: c.String("tls-cert"), key: c.String("tls-key"), clientCA: c.String("tls-client-ca")}
	var required bool
	switch mode := c.String("tls"); mode {
	case "off":
		for _, f := range []string{"tls-cert", "tls-key", "tls-client-ca"} {
			if c.String(f) != "" {
				return nil, usageError{fmt.Errorf("--%s is set but --tls is off; use --tls on or --tls require", f)}
			}
		}
		return nil, nil
	case "on":
	case "require":
		required = true
	default:
		return nil, usageError{fmt.Errorf("--tls %q: want off, on or require", mode)}
	}
	switch {
	case files.cert == "" && files.key == "":
		return nil, usageError{fmt.Errorf("--tls %s needs --tls-cert and --tls-key", c.String("tls"))}
	case files.key == "":
		return nil, usageError{errors.New("--tls-cert is set without --tls-key")}
	case files.cert == "":
		return nil, usageError{errors.New("--tls-key is set without --tls-cert")}
	}
	t := &tlsSetup{required: required, files: files}
	cfg, err := files.load()
	if err != nil {
		return nil, usageError{err}
	}
	t.current.Store(cfg)
	return t, nil
}

// config is the nbd.Server's TLSConfig: each connection takes the files'
// configuration as last loaded.
func (t *tlsSetup) config() *tls.Config {
	if t == nil {
		return nil
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return t.current.Load(), nil
		},
	}
}

// reload reads the files again and, only if all of them are good, makes
// them the configuration of the connections that come next; otherwise
// the last good one stays, and the error is logged.
func (t *tlsSetup) reload(log *slog.Logger) {
	if t == nil {
		log.Info("SIGHUP: nothing to reload (--tls is off)")
		return
	}
	cfg, err := t.files.load()
	if err != nil {
		log.Error("SIGHUP: TLS files not reloaded; keeping the previous certificate", "err", err)
		return
	}
	t.current.Store(cfg)
	log.Info("SIGHUP: TLS files reloaded", t.describe()...)
}

// describe is the log's account of the certificate in use.
func (t *tlsSetup) describe() []any {
	cfg := t.current.Load()
	leaf := cfg.Certificates[0].Leaf
	args := []any{"required", t.required, "cert", t.files.cert, "subject", leaf.Subject.String(),
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339)}
	if t.files.clientCA != "" {
		args = append(args, "client_ca", t.files.clientCA)
	}
	return args
}

// load reads the certificate, its key and the client CAs into a server
// configuration.
func (f tlsFiles) load() (*tls.Config, error) {
	certPEM, err := os.ReadFile(f.cert)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert: %w", err)
	}
	keyPEM, err := os.ReadFile(f.key)
	if err != nil {
		return nil, fmt.Errorf("--tls-key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s with --tls-key %s: %s", f.cert, f.key, strings.TrimPrefix(err.Error(), "tls: "))
	}
	// Go 1.23 on fills Leaf.
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("--tls-cert %s: %w", f.cert, err)
		}
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if f.clientCA != "" {
		pool, err := loadCAs(f.clientCA)
		if err != nil {
			return nil, err
		}
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, pool
	}
	return cfg, nil
}

// loadCAs reads a PEM file of CA certificates; it must hold at least one,
// and nothing that is not a certificate.
func loadCAs(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--tls-client-ca: %w", err)
	}
	pool := x509.NewCertPool()
	var n int
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("--tls-client-ca %s: holds a %s, want only certificates", path, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("--tls-client-ca %s: certificate %d: %w", path, n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("--tls-client-ca %s: no PEM certificate in it", path)
	}
	return pool, nil
}
