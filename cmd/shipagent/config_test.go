package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shipbot/shipbot/distributor"
)

func TestExampleConfig(t *testing.T) {
	pub, _, _ := distributor.GenerateKey()
	b, err := os.ReadFile("../../configs/shipagent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ok := strings.Replace(string(b), "REPLACE-with-the-contents-of-shipbot.pub=", distributor.EncodePublicKey(pub), 1)
	write := func(s string) string {
		p := filepath.Join(t.TempDir(), "shipagent.yaml")
		os.WriteFile(p, []byte(s), 0o644)
		return p
	}
	c, err := LoadConfig(write(ok))
	if err != nil {
		t.Fatal(err)
	}
	if c.Host != "web-01" || c.Keep != 3 || c.UploadRate != 50<<20 || c.Health.URL == "" || len(c.ActivateHook) != 3 {
		t.Errorf("example: %+v", c)
	}
	// As shipped, the placeholder key is refused with a pointer to keygen.
	if _, err := LoadConfig(write(string(b))); err == nil || !strings.Contains(err.Error(), "shipbot.pub") {
		t.Errorf("placeholder key: %v", err)
	}
	for _, c := range []struct{ from, to, want string }{
		{"rack: r12", "rak: r12", `unknown key "rak"`},
		{"keep: 3", "keep: 1", "keep at least 2"},
		{"host: web-01", "host: web 01", "host:"},
		{"upload_rate: 50MiB", "upload_rate: fast", "not a size"},
		{"coordinator: https://shipbot.internal:8080", "coordinator: \"\"", "coordinator: required"},
		{"  url: http://127.0.0.1:8081/healthz", "  url: http://x\n  command: [true]", "not both"},
	} {
		_, err := LoadConfig(write(strings.Replace(ok, c.from, c.to, 1)))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.to, err, c.want)
		}
	}
}
