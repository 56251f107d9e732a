package kv

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit/distkit/examples/internal/testcert"
)

// peerTLS issues a certificate for 127.0.0.1 by ca, valid until notAfter,
// and returns it as a PeerTLS trusting trust.
func peerTLS(t *testing.T, ca, trust *testcert.CA, notAfter time.Time) *PeerTLS {
	t.Helper()
	dir := t.TempDir()
	certPEM, keyPEM, err := ca.Issue("node", notAfter, net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"cert.pem": certPEM, "key.pem": keyPEM, "ca.pem": trust.PEM()}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p, err := LoadPeerTLS(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// caller returns a transport calling addr as node "x" over p's TLS.
func caller(t *testing.T, p *PeerTLS, addr string) *HTTPTransport {
	t.Helper()
	c, err := p.client(&http.Client{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tr := &HTTPTransport{Client: c, TLS: true}
	tr.SetAddr("x", addr)
	return tr
}

// Mutual TLS between nodes: an RPC from a peer with a certificate of the
// cluster's CA is served; one with a certificate of another CA, an
// expired one, or none, is refused, and so is a plaintext one. The other
// way, a node refuses a peer whose server certificate is from another CA
// or expired, before sending it anything: the call was not delivered.
func TestPeerTLS(t *testing.T) {
	ca, err := testcert.NewCA("cluster")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := testcert.NewCA("another cluster")
	if err != nil {
		t.Fatal(err)
	}
	hour := time.Now().Add(time.Hour)
	server := peerTLS(t, ca, ca, hour)
	srv := httptest.NewUnstartedServer(API(nodeOf(t, &HTTPTransport{}), APIConfig{PeerCertificates: true}))
	srv.TLS = server.serverConfig()
	srv.StartTLS()
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	req, err := (&request{Op: opRead, Key: []byte("k")}).marshal()
	if err != nil {
		t.Fatal(err)
	}
	call := func(tr *HTTPTransport) error { _, err := tr.Call(context.Background(), "x", req); return err }

	if err := call(caller(t, peerTLS(t, ca, ca, hour), addr)); err != nil {
		t.Fatalf("a peer of the cluster's CA: %v", err)
	}
	for name, p := range map[string]*PeerTLS{
		"another CA's certificate": peerTLS(t, foreign, ca, hour),
		"an expired certificate":   peerTLS(t, ca, ca, time.Now().Add(-time.Minute)),
	} {
		if err := call(caller(t, p, addr)); err == nil {
			t.Errorf("%s: served", name)
		}
	}
	anonymous := peerTLS(t, ca, ca, hour)
	anonymous.Certificate = tls.Certificate{}
	if err := call(caller(t, anonymous, addr)); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("no client certificate: %v, want ErrUnauthenticated", err)
	}
	plain := &HTTPTransport{}
	plain.SetAddr("x", addr)
	if err := call(plain); err == nil {
		t.Error("a plaintext RPC: served")
	}

	// The other way: a peer whose server certificate does not verify.
	for name, p := range map[string]*PeerTLS{
		"another CA's server": peerTLS(t, foreign, foreign, hour),
		"an expired server":   peerTLS(t, ca, ca, time.Now().Add(-time.Minute)),
	} {
		var reached atomic.Int64
		fake := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { reached.Add(1) }))
		fake.TLS = p.serverConfig()
		fake.StartTLS()
		err := call(caller(t, peerTLS(t, ca, ca, hour), fake.Listener.Addr().String()))
		fake.Close()
		if !errors.Is(err, ErrNotDelivered) || reached.Load() != 0 {
			t.Errorf("%s: %v, reached %d times; want ErrNotDelivered", name, err, reached.Load())
		}
	}
}

// Bad TLS configuration is refused with an error naming what is wrong.
func TestPeerTLSBadConfig(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca, err := testcert.NewCA("cluster")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("n1", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := errors.Join(os.WriteFile(cert, certPEM, 0o600), os.WriteFile(key, keyPEM, 0o600)); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPeerTLS(filepath.Join(dir, "missing.pem"), key, notPEM); err == nil {
		t.Error("a missing certificate: loaded")
	}
	if _, err := LoadPeerTLS(cert, key, filepath.Join(dir, "missing.pem")); err == nil {
		t.Error("a missing CA: loaded")
	}
	if _, err := LoadPeerTLS(cert, key, notPEM); err == nil {
		t.Error("a CA file without PEM: loaded")
	}
	if _, err := LoadPeerTLS(cert, cert, notPEM); err == nil {
		t.Error("a certificate as its own key: loaded")
	}
	p := peerTLS(t, ca, ca, time.Now().Add(time.Hour))
	_, err = StartServer(ServerConfig{ID: "n1", Listen: "127.0.0.1:0", Gossip: "127.0.0.1:0", Data: t.TempDir(), TLS: p,
		Client: &http.Client{Transport: roundTripper(func(*http.Request) (*http.Response, error) { return nil, nil })}})
	if !errors.Is(err, ErrTLSClient) {
		t.Errorf("TLS with a custom RoundTripper: %v, want ErrTLSClient", err)
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
