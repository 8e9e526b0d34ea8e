package distributor

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Manifest says what a release's artifact is. shipbot signs it; an agent activates
// nothing whose manifest does not verify against its configured public key.
type Manifest struct {
	Release     string    `json:"release"`
	Version     string    `json:"version"`
	Artifact    string    `json:"artifact"` // file name
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`   // hex, of the whole artifact
	InfoHash    string    `json:"infohash"` // hex, BitTorrent v1 (sha1 of Info)
	PieceLength int64     `json:"piece_length"`
	Created     time.Time `json:"created"`
	// Info is the torrent's bencoded info dictionary, so a host can start downloading
	// from the manifest alone; its sha1 must equal InfoHash.
	Info []byte `json:"info"`
}

// Signed is a manifest as it travels: the exact bytes that were signed, and the
// signature. Verification works on those bytes, never on a re-encoding.
type Signed struct {
	Manifest  json.RawMessage `json:"manifest"`
	Signature string          `json:"signature"` // base64 ed25519
}

const signContext = "shipbot manifest v1\n"

// Errors of manifest verification.
var (
	ErrBadSignature = errors.New("manifest signature does not verify")
	ErrBadManifest  = errors.New("manifest is malformed")
)

// Sign encodes and signs m.
func Sign(m *Manifest, key ed25519.PrivateKey) (*Signed, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	sig := ed25519.Sign(key, append([]byte(signContext), b...))
	return &Signed{Manifest: b, Signature: base64.StdEncoding.EncodeToString(sig)}, nil
}

// Verify checks the signature with pub, decodes the manifest strictly, and checks that
// its info dictionary hashes to its infohash. The error says which check failed.
func (s *Signed) Verify(pub ed25519.PublicKey) (*Manifest, error) {
	if s == nil || len(s.Manifest) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadManifest)
	}
	sig, err := base64.StdEncoding.DecodeString(s.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: signature is not %d bytes of base64", ErrBadSignature, ed25519.SignatureSize)
	}
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	if !ed25519.Verify(pub, append([]byte(signContext), s.Manifest...), sig) {
		return nil, fmt.Errorf("%w: signed by another key, or altered", ErrBadSignature)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(s.Manifest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadManifest, err)
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return &m, nil
}

// check validates fields and that Info hashes to InfoHash.
func (m *Manifest) check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadManifest, fmt.Sprintf(format, a...))
	}
	switch {
	case m.Release == "" || m.Version == "":
		return bad("release and version are required")
	case m.Artifact == "" || strings.ContainsAny(m.Artifact, "/\\") || strings.HasPrefix(m.Artifact, "."):
		return bad("artifact name %q is not a plain file name", m.Artifact)
	case m.Size <= 0:
		return bad("size %d", m.Size)
	case len(m.SHA256) != 64 || !isHex(m.SHA256):
		return bad("sha256 %q is not 64 hex digits", m.SHA256)
	case len(m.InfoHash) != 40 || !isHex(m.InfoHash):
		return bad("infohash %q is not 40 hex digits", m.InfoHash)
	case m.PieceLength <= 0 || m.PieceLength&(m.PieceLength-1) != 0:
		return bad("piece length %d is not a power of two", m.PieceLength)
	case len(m.Info) == 0:
		return bad("info dictionary is missing")
	}
	if h := sha1.Sum(m.Info); hex.EncodeToString(h[:]) != m.InfoHash {
		return bad("info dictionary hashes to %x, not the infohash %s", h, m.InfoHash)
	}
	return nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// GenerateKey makes a signing key pair.
func GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(rand.Reader)
}

// PEM block types of the key files.
const (
	pemPrivate = "SHIPBOT ED25519 PRIVATE KEY"
	pemPublic  = "SHIPBOT ED25519 PUBLIC KEY"
)

// WriteKeys writes dir/shipbot.key (private, 0600) and dir/shipbot.pub. It refuses
// to overwrite an existing private key.
func WriteKeys(dir string) (pubPath, keyPath string, err error) {
	pub, priv, err := GenerateKey()
	if err != nil {
		return "", "", err
	}
	keyPath, pubPath = filepath.Join(dir, "shipbot.key"), filepath.Join(dir, "shipbot.pub")
	f, err := os.OpenFile(keyPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", "", fmt.Errorf("write private key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: pemPrivate, Bytes: priv.Seed()}); err != nil {
		f.Close()
		return "", "", err
	}
	if err := f.Close(); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(pubPath, []byte(EncodePublicKey(pub)+"\n"), 0o644); err != nil {
		return "", "", fmt.Errorf("write public key: %w", err)
	}
	return pubPath, keyPath, nil
}

// EncodePublicKey renders a public key the way configs hold it: base64.
func EncodePublicKey(pub ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(pub) }

// ParsePublicKey reads a public key from base64, or from a .pub file's contents.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	if b, _ := pem.Decode([]byte(s)); b != nil {
		if b.Type != pemPublic {
			return nil, fmt.Errorf("public key: PEM block is %q, want %q", b.Type, pemPublic)
		}
		s = base64.StdEncoding.EncodeToString(b.Bytes)
	}
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(k) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key: want %d bytes of base64 (the contents of shipbot.pub)", ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(k), nil
}

// ParsePrivateKey reads a private key file's contents (as written by WriteKeys).
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != pemPrivate || len(b.Bytes) != ed25519.SeedSize {
		return nil, fmt.Errorf("private key: want a %q PEM block as written by shipbot keygen", pemPrivate)
	}
	return ed25519.NewKeyFromSeed(b.Bytes), nil
}
