package certs

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestGenerateWritesAVerifiableServingPair(t *testing.T) {
	dir := t.TempDir()
	ca, serving, err := Generate(dir, []string{"gpu-label-webhook.gpu-label-webhook.svc", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	for _, host := range []string{"gpu-label-webhook.gpu-label-webhook.svc", "127.0.0.1"} {
		if _, err := serving.Cert.Verify(x509.VerifyOptions{DNSName: host, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
	if _, err := serving.Cert.Verify(x509.VerifyOptions{DNSName: "other.example", Roots: pool}); err == nil {
		t.Error("verified for a host it was not issued for")
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")); err != nil {
		t.Errorf("written pair does not load: %v", err)
	}
	st, _ := os.Stat(filepath.Join(dir, "tls.key"))
	if st.Mode().Perm() != 0o600 {
		t.Errorf("tls.key mode %v", st.Mode().Perm())
	}
	if got := serving.Cert.NotAfter.Sub(time.Now()); got < 360*24*time.Hour || got > 366*24*time.Hour {
		t.Errorf("validity %v", got)
	}
}

func TestClientCertificateCarriesUserAndGroups(t *testing.T) {
	ca, err := NewCA("ca", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.Client("system:node:n1", []string{"system:nodes"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if _, err := c.Cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
	if c.Cert.Subject.CommonName != "system:node:n1" || c.Cert.Subject.Organization[0] != "system:nodes" {
		t.Errorf("subject %v", c.Cert.Subject)
	}
	if _, err := ca.Serving(nil, time.Now()); err == nil {
		t.Error("serving certificate without hosts")
	}
}
