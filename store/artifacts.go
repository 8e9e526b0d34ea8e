package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/shipbot/shipbot/bot"
)

// ErrTooLarge means an artifact is over the configured size limit.
var ErrTooLarge = errors.New("artifact is over the size limit")

// Artifacts keeps release builds on disk, one directory per version, under Dir.
// A build is streamed to a temporary file, hashed on the way, synced, and renamed
// into place only when complete, so a half-written file is never taken as a build.
type Artifacts struct {
	Dir     string
	MaxSize int64 // bytes; 0 means no limit
}

// ValidArtifactName reports whether name is a plain file name we can store.
func ValidArtifactName(name string) error {
	switch {
	case name == "":
		return errors.New("artifact name is empty")
	case len(name) > 200:
		return errors.New("artifact name is longer than 200 bytes")
	case strings.HasPrefix(name, "."):
		return fmt.Errorf("artifact name %q starts with a dot", name)
	case strings.ContainsAny(name, "/\\") || name != filepath.Base(name):
		return fmt.Errorf("artifact name %q must be a plain file name, without directories", name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("artifact name %q contains control characters", name)
		}
	}
	return nil
}

// Put streams src into the store as version's artifact. It never holds the artifact
// in memory and stops reading as soon as the size limit is passed.
func (a *Artifacts) Put(version, name string, src io.Reader) (bot.Artifact, error) {
	if !bot.ValidVersion(version) {
		return bot.Artifact{}, fmt.Errorf("bad version %q", version)
	}
	if err := ValidArtifactName(name); err != nil {
		return bot.Artifact{}, err
	}
	dir := filepath.Join(a.Dir, version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return bot.Artifact{}, fmt.Errorf("store artifact: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".upload-*")
	if err != nil {
		return bot.Artifact{}, fmt.Errorf("store artifact: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	limit := src
	if a.MaxSize > 0 {
		limit = io.LimitReader(src, a.MaxSize+1)
	}
	n, err := io.Copy(io.MultiWriter(tmp, h), limit)
	if err != nil {
		return bot.Artifact{}, fmt.Errorf("store artifact: %w", err)
	}
	if a.MaxSize > 0 && n > a.MaxSize {
		return bot.Artifact{}, fmt.Errorf("%w: more than %d bytes (limit %s)", ErrTooLarge, a.MaxSize, bot.HumanBytes(a.MaxSize))
	}
	if n == 0 {
		return bot.Artifact{}, errors.New("artifact is empty")
	}
	if err := tmp.Sync(); err != nil {
		return bot.Artifact{}, fmt.Errorf("store artifact: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return bot.Artifact{}, fmt.Errorf("store artifact: %w", err)
	}
	final := filepath.Join(dir, name)
	if err := os.Rename(tmp.Name(), final); err != nil {
		return bot.Artifact{}, fmt.Errorf("store artifact: %w", err)
	}
	done = true
	if err := os.Chmod(final, 0o444); err != nil {
		return bot.Artifact{}, fmt.Errorf("store artifact: %w", err)
	}
	return bot.Artifact{
		Name:   name,
		Path:   filepath.Join(version, name),
		Size:   n,
		SHA256: hex.EncodeToString(h.Sum(nil)),
	}, nil
}

// Remove deletes version's directory; used when registering the release failed.
func (a *Artifacts) Remove(version string) error {
	if !bot.ValidVersion(version) {
		return fmt.Errorf("bad version %q", version)
	}
	return os.RemoveAll(filepath.Join(a.Dir, version))
}

// File returns where an artifact lives on disk.
func (a *Artifacts) File(art bot.Artifact) string { return filepath.Join(a.Dir, art.Path) }
