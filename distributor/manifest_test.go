package distributor_test

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/distributor"
)

func testManifest() *distributor.Manifest {
	info := []byte("d6:lengthi5e4:name3:app12:piece lengthi262144e6:pieces20:aaaaaaaaaaaaaaaaaaaa7:privatei1ee")
	h := sha1.Sum(info)
	return &distributor.Manifest{Release: "v42", Version: "v42", Artifact: "app", Size: 5,
		SHA256: strings.Repeat("ab", 32), InfoHash: hex.EncodeToString(h[:]), PieceLength: 262144,
		Created: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC), Info: info}
}

func TestManifestSignVerify(t *testing.T) {
	pub, priv, _ := distributor.GenerateKey()
	otherPub, otherPriv, _ := distributor.GenerateKey()
	s, err := distributor.Sign(testManifest(), priv)
	if err != nil {
		t.Fatal(err)
	}
	wire, _ := json.Marshal(s)
	var back distributor.Signed
	if err := json.Unmarshal(wire, &back); err != nil {
		t.Fatal(err)
	}
	m, err := back.Verify(pub)
	if err != nil || m.Release != "v42" || m.Size != 5 {
		t.Fatalf("verify: %+v %v", m, err)
	}

	if _, err := back.Verify(otherPub); !errors.Is(err, distributor.ErrBadSignature) || !strings.Contains(err.Error(), "another key") {
		t.Errorf("other key: %v", err)
	}
	otherSigned, _ := distributor.Sign(testManifest(), otherPriv)
	if _, err := otherSigned.Verify(pub); !errors.Is(err, distributor.ErrBadSignature) {
		t.Errorf("signed by another key: %v", err)
	}

	altered := back
	altered.Manifest = []byte(strings.Replace(string(back.Manifest), `"size":5`, `"size":6`, 1))
	if _, err := altered.Verify(pub); !errors.Is(err, distributor.ErrBadSignature) {
		t.Errorf("altered size: %v", err)
	}

	for name, s := range map[string]*distributor.Signed{
		"empty":         {},
		"garbage sig":   {Manifest: back.Manifest, Signature: "!!!"},
		"short sig":     {Manifest: back.Manifest, Signature: base64.StdEncoding.EncodeToString([]byte("short"))},
		"truncated":     {Manifest: back.Manifest[:len(back.Manifest)/2], Signature: back.Signature},
		"garbage bytes": {Manifest: []byte("\x00\x01garbage"), Signature: back.Signature},
	} {
		if _, err := s.Verify(pub); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

// A correctly signed manifest whose info does not hash to its infohash is refused.
func TestManifestInfohashMismatch(t *testing.T) {
	pub, priv, _ := distributor.GenerateKey()
	m := testManifest()
	m.InfoHash = strings.Repeat("0", 40)
	if _, err := distributor.Sign(m, priv); err == nil || !strings.Contains(err.Error(), "not the infohash") {
		t.Errorf("Sign accepted a wrong infohash: %v", err)
	}
	// Signed by a careless signer anyway: Verify still refuses.
	b, _ := json.Marshal(m)
	s := &distributor.Signed{Manifest: b, Signature: signRaw(priv, b)}
	if _, err := s.Verify(pub); !errors.Is(err, distributor.ErrBadManifest) || !strings.Contains(err.Error(), "infohash") {
		t.Errorf("verify: %v", err)
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	pubPath, keyPath, err := distributor.WriteKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(keyPath); st.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v", st.Mode())
	}
	if _, _, err := distributor.WriteKeys(dir); err == nil {
		t.Error("WriteKeys overwrote an existing key")
	}
	kb, _ := os.ReadFile(keyPath)
	priv, err := distributor.ParsePrivateKey(kb)
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := os.ReadFile(pubPath)
	pub, err := distributor.ParsePublicKey(string(pb))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := distributor.Sign(testManifest(), priv)
	if _, err := s.Verify(pub); err != nil {
		t.Errorf("key files do not pair: %v", err)
	}
	if _, err := distributor.ParsePublicKey("nonsense"); err == nil {
		t.Error("bad public key parsed")
	}
	if _, err := distributor.ParsePrivateKey([]byte("nonsense")); err == nil {
		t.Error("bad private key parsed")
	}
}
