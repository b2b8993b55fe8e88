package transport

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNodeCredentialsCreatedOnceAndReused(t *testing.T) {
	dir := t.TempDir()
	c1, err := LoadOrCreateNode(dir, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if c1.Self() != (Peer{Role: RoleNode, ID: "n1"}) {
		t.Fatalf("Self() = %+v", c1.Self())
	}
	for _, f := range []string{"ca.key", "node.key"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	leaf := c1.cert.Leaf
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "gridnode" || leaf.URIs[0].String() != "gridnode://node/n1" {
		t.Fatalf("node cert SANs: DNS %v, URI %v", leaf.DNSNames, leaf.URIs)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "node.pem"))
	c2, err := LoadOrCreateNode(dir, "n1")
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "node.pem"))
	if string(before) != string(after) || !c2.cert.Leaf.Equal(leaf) {
		t.Fatal("a second start issued a new certificate instead of reusing it")
	}
	_, err = LoadOrCreateNode(dir, "n2")
	if err == nil || !strings.Contains(err.Error(), `not of node "n2"`) {
		t.Fatalf("node.pem of n1 loaded as n2: %v", err)
	}
	if _, err := LoadOrCreateNode(t.TempDir(), "bad/id"); err == nil {
		t.Fatal("accepted a node ID with a slash")
	}
}

// A node given ca.pem and its own pair, but not the CA key, starts.
func TestNodeWithoutCAKey(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreateNode(dir, "n1"); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "ca.key"))
	if _, err := LoadOrCreateNode(dir, "n1"); err != nil {
		t.Fatalf("restart without the CA key: %v", err)
	}
	other := t.TempDir()
	data, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	os.WriteFile(filepath.Join(other, "ca.pem"), data, 0o644)
	_, err := LoadOrCreateNode(other, "n2")
	if err == nil || !strings.Contains(err.Error(), "CA key") {
		t.Fatalf("issuing without the CA key: %v", err)
	}
}

func dialQUIC(t *testing.T, n *QUIC, addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, n, addr, ClientConfig{})
	if err != nil {
		return err
	}
	defer c.Close()
	var out echoMsg
	// TLS 1.3 checks the client's certificate last: a rejected client may
	// only find out on its first call.
	return c.Call(ctx, "echo", echoMsg{Text: "hi"}, &out)
}

func TestMutualTLS(t *testing.T) {
	tn := quicTestNet(t)
	addr, _ := startServer(t, tn, ServerConfig{})
	if err := dialQUIC(t, tn.client.(*QUIC), addr); err != nil {
		t.Fatalf("a client of our CA: %v", err)
	}

	// A client whose certificate comes from another CA.
	otherDir := t.TempDir()
	if _, err := LoadOrCreateNode(otherDir, "intruder-node"); err != nil {
		t.Fatal(err)
	}
	cf, kf, err := IssueClient(otherDir, "mallory", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// It trusts our CA, so the server passes its check: only its own cert is wrong.
	ourCA := filepath.Join(t.TempDir(), "ca.pem")
	node := tn.server.(*QUIC).creds
	writeCAOf(t, node, ourCA)
	if _, err := LoadClient(ourCA, cf, kf); err == nil {
		t.Fatal("LoadClient accepted a certificate from another CA")
	}
	mallory := foreignClient(t, ourCA, cf, kf)
	if err := dialQUIC(t, NewQUIC(mallory, QUICConfig{}), addr); err == nil {
		t.Fatal("a client with a certificate from another CA got through")
	} else {
		t.Logf("foreign client rejected: %v", err)
	}

	// A client of our CA must not be able to pose as a server.
	clientAsServer := NewQUIC(tn.client.(*QUIC).creds, QUICConfig{})
	l, err := clientAsServer.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if c, err := l.Accept(ctx); err == nil {
			c.Close("")
		}
	}()
	if err := dialQUIC(t, tn.server.(*QUIC), l.Addr()); err == nil {
		t.Fatal("a node accepted a client certificate as a server")
	} else {
		t.Logf("client posing as server rejected: %v", err)
	}
}

func writeCAOf(t *testing.T, c *Credentials, path string) {
	t.Helper()
	// The CA is the last certificate the pool verified the leaf against.
	chains, err := c.cert.Leaf.Verify(x509VerifyOpts(c))
	if err != nil {
		t.Fatal(err)
	}
	ca := chains[0][len(chains[0])-1]
	os.WriteFile(path, pemCert(ca.Raw), 0o644)
}

// foreignClient builds credentials that trust caFile but present a pair
// from another CA, bypassing LoadClient's own check, as an attacker would.
func foreignClient(t *testing.T, caFile, certFile, keyFile string) *Credentials {
	t.Helper()
	ca, err := readCert(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := newPool(ca)
	return &Credentials{roots: roots, cert: pair, self: Peer{Role: RoleClient, ID: "mallory"}}
}

func TestPeerFromState(t *testing.T) {
	if _, err := PeerFromState(tls.ConnectionState{}); CodeOf(err) != CodeUnauthenticated {
		t.Fatalf("no certificate: %v", err)
	}
	c, err := LoadOrCreateNode(t.TempDir(), "n7")
	if err != nil {
		t.Fatal(err)
	}
	p, err := PeerFromState(tls.ConnectionState{PeerCertificates: []*x509Certificate{c.cert.Leaf}})
	if err != nil || p != (Peer{Role: RoleNode, ID: "n7"}) {
		t.Fatalf("got %+v, %v", p, err)
	}
}
