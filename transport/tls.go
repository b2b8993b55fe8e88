package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Role says what kind of party a certificate identifies.
type Role string

// Roles. A node may serve and dial; a client may only dial.
const (
	RoleNode   Role = "node"
	RoleClient Role = "client"
)

// Peer is the authenticated identity of the other side of a connection.
type Peer struct {
	Role Role
	ID   string
}

// String returns the identity as it appears in the certificate's URI SAN.
func (p Peer) String() string { return identityScheme + "://" + string(p.Role) + "/" + p.ID }

const (
	identityScheme = "gridnode"
	// serverName is the DNS SAN of every node certificate; clients verify
	// against it regardless of the IP and port they dialed.
	serverName = "gridnode"
	alpn       = "gridnode/1"

	caValidity   = 20 * 365 * 24 * time.Hour
	leafValidity = 10 * 365 * 24 * time.Hour
	clockSkew    = time.Hour
)

// File names inside a node's credentials directory.
const (
	caCertFile   = "ca.pem"
	caKeyFile    = "ca.key"
	nodeCertFile = "node.pem"
	nodeKeyFile  = "node.key"
)

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Credentials are what an endpoint needs for mutual TLS: the cluster CA, its
// own certificate chain and key, and the identity that certificate carries.
type Credentials struct {
	roots *x509.CertPool
	cert  tls.Certificate
	self  Peer
}

// Self is the identity this endpoint presents to others.
func (c *Credentials) Self() Peer { return c.self }

// LoadOrCreateNode returns the credentials of node nodeID kept in dir. On
// first start it creates the cluster CA (ca.pem, ca.key) unless ca.pem is
// already there, and a node certificate (node.pem, node.key) signed by it.
// Existing files are reused; a node.pem issued for another node ID is refused.
// Only ca.pem is needed once node.pem exists, so a joining node can be given
// ca.pem, node.pem and node.key without the CA key.
func LoadOrCreateNode(dir, nodeID string) (*Credentials, error) {
	if !validName.MatchString(nodeID) {
		return nil, fmt.Errorf("transport: node ID %q is not valid: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit", nodeID)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("transport: credentials directory: %w", err)
	}
	caPath, caKeyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	certPath, keyPath := filepath.Join(dir, nodeCertFile), filepath.Join(dir, nodeKeyFile)

	if !exists(caPath) {
		if exists(caKeyPath) {
			return nil, fmt.Errorf("transport: %s exists without %s; restore the CA certificate or remove both to start a new cluster", caKeyPath, caPath)
		}
		if exists(certPath) {
			return nil, fmt.Errorf("transport: %s exists without %s; restore the CA certificate it was issued by", certPath, caPath)
		}
		if err := createCA(caPath, caKeyPath); err != nil {
			return nil, err
		}
	}
	if !exists(certPath) {
		ca, caKey, err := loadCA(caPath, caKeyPath)
		if err != nil {
			return nil, fmt.Errorf("transport: cannot issue a certificate for node %q: %w", nodeID, err)
		}
		if err := issueLeaf(ca, caKey, Peer{Role: RoleNode, ID: nodeID}, certPath, keyPath); err != nil {
			return nil, err
		}
	}
	creds, err := loadCreds(caPath, certPath, keyPath)
	if err != nil {
		return nil, err
	}
	if creds.self != (Peer{Role: RoleNode, ID: nodeID}) {
		return nil, fmt.Errorf("transport: %s is the certificate of %s, not of node %q; point the node at its own data directory or remove node.pem and node.key to issue a new one", certPath, creds.self, nodeID)
	}
	return creds, nil
}

// IssueClient signs a client certificate named name with the CA kept in dir
// and writes outDir/<name>.pem and outDir/<name>.key.
func IssueClient(dir, name, outDir string) (certFile, keyFile string, err error) {
	if !validName.MatchString(name) {
		return "", "", fmt.Errorf("transport: client name %q is not valid: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	ca, caKey, err := loadCA(filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile))
	if err != nil {
		return "", "", fmt.Errorf("transport: cannot issue client %q: %w", name, err)
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return "", "", fmt.Errorf("transport: client credentials directory: %w", err)
	}
	certFile, keyFile = filepath.Join(outDir, name+".pem"), filepath.Join(outDir, name+".key")
	if err := issueLeaf(ca, caKey, Peer{Role: RoleClient, ID: name}, certFile, keyFile); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// LoadClient loads client credentials issued by IssueClient.
func LoadClient(caFile, certFile, keyFile string) (*Credentials, error) {
	return loadCreds(caFile, certFile, keyFile)
}

// PeerFromState extracts the identity from the peer's leaf certificate. It
// does not verify the chain; crypto/tls has done that by the time a
// connection state exists.
func PeerFromState(cs tls.ConnectionState) (Peer, error) {
	if len(cs.PeerCertificates) == 0 {
		return Peer{}, Errorf(CodeUnauthenticated, "peer presented no certificate")
	}
	return peerFromCert(cs.PeerCertificates[0])
}

func peerFromCert(cert *x509.Certificate) (Peer, error) {
	var found []Peer
	for _, u := range cert.URIs {
		if u.Scheme != identityScheme {
			continue
		}
		role := Role(u.Host)
		id := strings.TrimPrefix(u.Path, "/")
		if (role != RoleNode && role != RoleClient) || !validName.MatchString(id) || u.RawQuery != "" || u.Fragment != "" {
			return Peer{}, Errorf(CodeUnauthenticated, "certificate %q carries a malformed identity %q", cert.Subject.CommonName, u.String())
		}
		found = append(found, Peer{Role: role, ID: id})
	}
	switch len(found) {
	case 0:
		return Peer{}, Errorf(CodeUnauthenticated, "certificate %q carries no %s:// identity", cert.Subject.CommonName, identityScheme)
	case 1:
		return found[0], nil
	default:
		return Peer{}, Errorf(CodeUnauthenticated, "certificate %q carries %d identities; exactly one is allowed", cert.Subject.CommonName, len(found))
	}
}

// serverTLS is the listener side: TLS 1.3 only, client certificate required
// and verified against the cluster CA, identity checked.
func (c *Credentials) serverTLS() *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{c.cert},
		ClientAuth:             tls.RequireAndVerifyClientCert,
		ClientCAs:              c.roots,
		NextProtos:             []string{alpn},
		SessionTicketsDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := PeerFromState(cs)
			return err
		},
	}
}

// clientTLS is the dialer side: the server must present a node certificate
// from the cluster CA for the name "gridnode".
func (c *Credentials) clientTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{c.cert},
		RootCAs:      c.roots,
		ServerName:   serverName,
		NextProtos:   []string{alpn},
		VerifyConnection: func(cs tls.ConnectionState) error {
			p, err := PeerFromState(cs)
			if err != nil {
				return err
			}
			if p.Role != RoleNode {
				return Errorf(CodeUnauthenticated, "server presented a %s certificate (%s); only nodes serve", p.Role, p)
			}
			return nil
		},
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func createCA(certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("transport: generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "gridnode cluster CA", Organization: []string{"gridnode"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("transport: create CA certificate: %w", err)
	}
	return writePair(certPath, keyPath, der, key)
}

func issueLeaf(ca *x509.Certificate, caKey any, who Peer, certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("transport: generate key for %s: %w", who, err)
	}
	u, err := url.Parse(who.String())
	if err != nil {
		return fmt.Errorf("transport: identity %s: %w", who, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: string(who.Role) + " " + who.ID, Organization: []string{"gridnode"}},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		URIs:         []*url.URL{u},
	}
	if who.Role == RoleNode {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.DNSNames = []string{serverName}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("transport: sign certificate for %s: %w", who, err)
	}
	return writePair(certPath, keyPath, der, key)
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n
}

// writePair writes the key first (0600) and the certificate last, each
// atomically, so a crash never leaves a certificate without its key.
func writePair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("transport: encode key: %w", err)
	}
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("transport: write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("transport: write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("transport: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("transport: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("transport: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("transport: write %s: %w", path, err)
	}
	return nil
}

func loadCA(certPath, keyPath string) (*x509.Certificate, any, error) {
	ca, err := readCert(certPath)
	if err != nil {
		return nil, nil, err
	}
	if !ca.IsCA {
		return nil, nil, fmt.Errorf("%s is not a CA certificate", certPath)
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("the CA key %s is missing; issue certificates on a host that has it", keyPath)
		}
		return nil, nil, fmt.Errorf("load CA key pair %s, %s: %w", certPath, keyPath, err)
	}
	return ca, pair.PrivateKey, nil
}

func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("transport: read certificate: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("transport: %s holds no PEM certificate", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("transport: parse %s: %w", path, err)
	}
	return cert, nil
}

func loadCreds(caFile, certFile, keyFile string) (*Credentials, error) {
	ca, err := readCert(caFile)
	if err != nil {
		return nil, err
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("transport: load key pair %s, %s: %w", certFile, keyFile, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("transport: parse %s: %w", certFile, err)
		}
		pair.Leaf = leaf
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("transport: %s was not issued by the CA in %s: %w", certFile, caFile, err)
	}
	self, err := peerFromCert(leaf)
	if err != nil {
		return nil, fmt.Errorf("transport: %s: %w", certFile, err)
	}
	return &Credentials{roots: roots, cert: pair, self: self}, nil
}
