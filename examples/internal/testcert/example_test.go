package testcert_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/distkit/distkit/examples/internal/testcert"
)

// A CA and a node certificate for 127.0.0.1, loaded as a TLS key pair.
func ExampleCA_Issue() {
	ca, err := testcert.NewCA("cluster CA")
	if err != nil {
		panic(err)
	}
	certPEM, keyPEM, err := ca.Issue("n1", time.Now().Add(time.Hour), net.IPv4(127, 0, 0, 1))
	if err != nil {
		panic(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	fmt.Println(err, pair.Leaf.Subject.CommonName, pair.Leaf.IPAddresses)
	// Output: <nil> n1 [127.0.0.1]
}
