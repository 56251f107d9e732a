package testcert

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"testing"
	"time"
)

// A certificate verifies against its CA until it expires, and never
// against another CA.
func TestIssue(t *testing.T) {
	ca, err := NewCA("a")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("b")
	if err != nil {
		t.Fatal(err)
	}
	verify := func(by *CA, notAfter time.Time) error {
		certPEM, _, err := ca.Issue("n1", notAfter, net.IPv4(127, 0, 0, 1))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := pem.Decode(certPEM)
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(by.PEM())
		_, err = cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		if err == nil {
			err = cert.VerifyHostname("127.0.0.1")
		}
		return err
	}
	if err := verify(ca, time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("by its CA: %v", err)
	}
	if err := verify(other, time.Now().Add(time.Hour)); err == nil {
		t.Fatal("verified by another CA")
	}
	if err := verify(ca, time.Now().Add(-time.Minute)); err == nil {
		t.Fatal("an expired certificate verified")
	}
}
