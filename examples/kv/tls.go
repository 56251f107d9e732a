package kv

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
)

// PeerTLS is mutual TLS between the nodes of a cluster: every node holds
// a certificate issued by the cluster's CA, valid for both server and
// client authentication (extended key usages serverAuth and clientAuth)
// and naming the host or IP address of its HTTP listener. With it, a
// node serves its whole HTTP API over TLS 1.3; a replica RPC is served
// only on a connection whose client presented a certificate that chains
// to the CA, and a node calls its peers only over TLS, verifying their
// certificate against the CA and their address. A peer with a
// certificate from another CA, an expired one or none is refused at the
// handshake (or, with none, by the RPC handler with 401). Clients of the
// key-value API need no certificate; they verify the node's against the
// CA. It is a plain value; see [LoadPeerTLS].
type PeerTLS struct {
	Certificate tls.Certificate // this node's, with its private key
	CAs         *x509.CertPool  // the cluster's CA
}

// LoadPeerTLS reads a node's PEM certificate and key and the cluster's PEM
// CA certificates. It returns the errors of reading and parsing the
// files, naming the file.
func LoadPeerTLS(certFile, keyFile, caFile string) (*PeerTLS, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("kv: TLS certificate %s with key %s: %w", certFile, keyFile, err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("kv: TLS CA: %w", err)
	}
	cas := x509.NewCertPool()
	if !cas.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("kv: TLS CA %s: no PEM certificate", caFile)
	}
	return &PeerTLS{Certificate: cert, CAs: cas}, nil
}

// serverConfig is the listener's TLS: a client certificate is optional
// (clients of the API have none) but, when given, must chain to the CA.
func (p *PeerTLS) serverConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{p.Certificate},
		ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: p.CAs}
}

// clientConfig is the replica RPCs' TLS: this node's certificate, and
// the peers' verified against the CA.
func (p *PeerTLS) clientConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{p.Certificate}, RootCAs: p.CAs}
}

// ErrTLSClient is returned by [StartServer] for a ServerConfig with TLS
// whose Client has a Transport other than an *http.Transport, which it
// cannot give the node's certificate.
var ErrTLSClient = errors.New("kv: with TLS, the Client's Transport must be nil or an *http.Transport")

// client returns a copy of c that presents the node's certificate and
// verifies its peers'.
func (p *PeerTLS) client(c *http.Client) (*http.Client, error) {
	var t *http.Transport
	switch base := c.Transport.(type) {
	case nil:
		t = http.DefaultTransport.(*http.Transport).Clone()
	case *http.Transport:
		t = base.Clone()
	default:
		return nil, ErrTLSClient
	}
	t.TLSClientConfig = p.clientConfig()
	out := *c
	out.Transport = t
	return &out, nil
}

// peerVerified reports whether r came over TLS from a client whose
// certificate chains to the CA.
func peerVerified(r *http.Request) bool {
	return r.TLS != nil && len(r.TLS.VerifiedChains) > 0
}

// unverifiedPeer answers r 401 and reports true when the node requires
// peer certificates and r came without a verified one.
func (a *api) unverifiedPeer(w http.ResponseWriter, r *http.Request) bool {
	if a.cfg.PeerCertificates && !peerVerified(r) {
		http.Error(w, fmt.Sprintf("%v: no verified peer certificate", ErrUnauthenticated), http.StatusUnauthorized)
		return true
	}
	return false
}
