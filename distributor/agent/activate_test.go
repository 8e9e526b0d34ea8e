package agent

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/distributor"
)

type entry struct {
	name, link string
	typ        byte
	data       string
}

func tarGz(t *testing.T, entries []entry) string {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.data)), Linkname: e.link}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		tw.WriteHeader(h)
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.data))
		}
	}
	tw.Close()
	zw.Close()
	p := filepath.Join(t.TempDir(), "app.tar.gz")
	os.WriteFile(p, buf.Bytes(), 0o644)
	return p
}

func TestUnpack(t *testing.T) {
	dir := t.TempDir()
	art := tarGz(t, []entry{{name: "bin/", typ: tar.TypeDir}, {name: "bin/app", typ: tar.TypeReg, data: "#!/bin/true"},
		{name: "VERSION", typ: tar.TypeReg, data: "v1\n"}, {name: "app", typ: tar.TypeSymlink, link: "bin/app"}})
	got, err := unpack(dir, &distributor.Manifest{Version: "v1", Artifact: "app.tar.gz"}, art)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(got, "VERSION")); string(b) != "v1\n" {
		t.Errorf("VERSION %q", b)
	}
	if l, _ := os.Readlink(filepath.Join(got, "app")); l != "bin/app" {
		t.Errorf("symlink %q", l)
	}
	// Anything that is not a tar.gz is placed as a file.
	raw := filepath.Join(t.TempDir(), "app.jar")
	os.WriteFile(raw, []byte("PK..."), 0o644)
	got, err = unpack(dir, &distributor.Manifest{Version: "v2", Artifact: "app.jar"}, raw)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(got, "app.jar")); string(b) != "PK..." {
		t.Errorf("placed file %q", b)
	}
}

func TestUnpackRefusesEscapes(t *testing.T) {
	for name, es := range map[string][]entry{
		"dot-dot":        {{name: "../evil", typ: tar.TypeReg, data: "x"}},
		"absolute":       {{name: "/etc/evil", typ: tar.TypeReg, data: "x"}},
		"symlink out":    {{name: "link", typ: tar.TypeSymlink, link: "../../etc/passwd"}},
		"absolute link":  {{name: "link", typ: tar.TypeSymlink, link: "/etc/passwd"}},
		"device":         {{name: "dev", typ: tar.TypeChar}},
		"nested dot-dot": {{name: "a/../../evil", typ: tar.TypeReg, data: "x"}},
	} {
		dir := t.TempDir()
		_, err := unpack(dir, &distributor.Manifest{Version: "v1", Artifact: "app.tar.gz"}, tarGz(t, es))
		if err == nil {
			t.Errorf("%s: unpacked", name)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("%s: left %v behind", name, ents)
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "evil")); err == nil {
			t.Errorf("%s: wrote outside the releases dir", name)
		}
	}
}

func TestSwitchCurrent(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "v1"), 0o755)
	os.Mkdir(filepath.Join(dir, "v2"), 0o755)
	for _, v := range []string{"v1", "v2", "v1"} {
		if err := switchCurrent(dir, v); err != nil {
			t.Fatal(err)
		}
		if got := readCurrent(dir); got != v {
			t.Errorf("current = %q, want %q", got, v)
		}
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".current-") {
			t.Errorf("temporary link left: %s", e.Name())
		}
	}
}

func TestRunHook(t *testing.T) {
	dir := t.TempDir()
	out, err := runHook(context.Background(), []string{"sh", "-c", `echo "$SHIPBOT_VERSION in $(pwd)"`}, time.Second, dir, "v7")
	if err != nil || !strings.Contains(out, "v7 in "+dir) {
		t.Errorf("hook: %q %v", out, err)
	}
	if _, err := runHook(context.Background(), []string{"sh", "-c", "echo broken >&2; exit 3"}, time.Second, dir, "v7"); err == nil || !strings.Contains(err.Error(), "broken") {
		t.Errorf("failing hook: %v", err)
	}
	start := time.Now()
	if _, err := runHook(context.Background(), []string{"sleep", "10"}, 200*time.Millisecond, dir, "v7"); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("hanging hook: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("the hook timeout was not applied")
	}
	// A hook that leaves a background child holding its output returns at once.
	start = time.Now()
	if _, err := runHook(context.Background(), []string{"sh", "-c", "sleep 5 & echo started"}, 10*time.Second, dir, "v7"); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("a background child held the hook for %s", el)
	}
}
