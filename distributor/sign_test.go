package distributor_test

import (
	"crypto/ed25519"
	"encoding/base64"
)

func signRaw(priv ed25519.PrivateKey, manifest []byte) string {
	return base64.StdEncoding.EncodeToString(ed25519.Sign(priv, append([]byte("shipbot manifest v1\n"), manifest...)))
}
