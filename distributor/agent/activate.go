package agent

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/shipbot/shipbot/distributor"
)

// Layout under the releases dir:
//
//	<version>/      an unpacked release (a tar.gz is extracted; any other artifact is
//	                placed as a file)
//	current         symlink to the active <version>, switched by rename (atomic)
//	.artifacts/     what the fetcher holds and seeds
const currentLink = "current"

// unpack makes dir/<version> from the artifact, via a temporary directory renamed
// into place, so a half-unpacked release is never taken for a whole one.
func unpack(dir string, m *distributor.Manifest, artifact string) (string, error) {
	final := filepath.Join(dir, m.Version)
	if st, err := os.Stat(final); err == nil && st.IsDir() {
		return final, nil
	}
	tmp, err := os.MkdirTemp(dir, ".unpack-"+m.Version+"-")
	if err != nil {
		return "", fmt.Errorf("unpack %s: %w", m.Version, err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	if isTarGz(artifact) {
		if err := extractTarGz(artifact, tmp); err != nil {
			return "", fmt.Errorf("unpack %s: %w", m.Version, err)
		}
	} else {
		// Hard-link when we can: the fetcher keeps seeding its copy read-only.
		dst := filepath.Join(tmp, m.Artifact)
		if err := os.Link(artifact, dst); err != nil {
			if err := copyFile(artifact, dst); err != nil {
				return "", fmt.Errorf("unpack %s: %w", m.Version, err)
			}
		}
	}
	if err := syncDir(tmp); err != nil {
		return "", fmt.Errorf("unpack %s: %w", m.Version, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("unpack %s: %w", m.Version, err)
	}
	ok = true
	return final, nil
}

func isTarGz(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	var magic [2]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil || magic != [2]byte{0x1f, 0x8b} {
		return false
	}
	f.Seek(0, 0)
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return false
	}
	_, err = tar.NewReader(zr).Next()
	return err == nil
}

// extractTarGz unpacks regular files, directories and relative symlinks that stay
// inside dst. Anything else (absolute paths, "..", devices) is refused.
func extractTarGz(src, dst string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		name := filepath.Clean(h.Name)
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("tar entry %q leaves the release directory", h.Name)
		}
		p := filepath.Join(dst, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, os.FileMode(h.Mode)&0o755|0o600)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, tr); err != nil {
				out.Close()
				return err
			}
			if err := out.Close(); err != nil {
				return err
			}
		case tar.TypeSymlink:
			target := filepath.Clean(filepath.Join(filepath.Dir(name), h.Linkname))
			if filepath.IsAbs(h.Linkname) || target == ".." || strings.HasPrefix(target, "../") {
				return fmt.Errorf("tar symlink %q -> %q leaves the release directory", h.Name, h.Linkname)
			}
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		default:
			return fmt.Errorf("tar entry %q has a type shipagent does not unpack (%c)", h.Name, h.Typeflag)
		}
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// readCurrent returns the version the current symlink points at, or "".
func readCurrent(dir string) string {
	t, err := os.Readlink(filepath.Join(dir, currentLink))
	if err != nil {
		return ""
	}
	return filepath.Base(t)
}

// switchCurrent points the current symlink at version: a new symlink under a
// temporary name, renamed over the old one, so readers see the old or the new
// target and never nothing.
func switchCurrent(dir, version string) error {
	var b [6]byte
	rand.Read(b[:])
	tmp := filepath.Join(dir, ".current-"+hex.EncodeToString(b[:]))
	if err := os.Symlink(version, tmp); err != nil {
		return fmt.Errorf("switch current to %s: %w", version, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, currentLink)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("switch current to %s: %w", version, err)
	}
	return syncDir(dir)
}

// runHook runs the activate hook for a release with a timeout. Its output is
// returned for the report.
func runHook(ctx context.Context, hook []string, timeout time.Duration, releaseDir, version string) (string, error) {
	if len(hook) == 0 {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, hook[0], hook[1:]...)
	cmd.Dir = releaseDir
	cmd.Env = append(os.Environ(), "SHIPBOT_VERSION="+version, "SHIPBOT_RELEASE_DIR="+releaseDir)
	// Output goes to a file, not a pipe: a service the hook starts in the background
	// may keep its descriptors, and a pipe would hold us until it exits.
	outf, err := os.CreateTemp("", "shipagent-hook-")
	if err != nil {
		return "", fmt.Errorf("activate hook: %w", err)
	}
	defer os.Remove(outf.Name())
	defer outf.Close()
	cmd.Stdout, cmd.Stderr = outf, outf
	err = cmd.Run()
	outf.Seek(0, 0)
	b, _ := io.ReadAll(io.LimitReader(outf, 64<<10))
	out := string(b)
	if ctx.Err() == context.DeadlineExceeded {
		return out, fmt.Errorf("activate hook timed out after %s", timeout)
	}
	if err != nil {
		return out, fmt.Errorf("activate hook failed: %v: %s", err, lastLine(out))
	}
	return out, nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
