package git_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shipbot/shipbot/bot/chattest"
	"github.com/shipbot/shipbot/bot/git"
)

func TestRange(t *testing.T) {
	repo := chattest.Repo(t)
	commits, err := git.Range(context.Background(), repo, "v1..v2")
	if err != nil {
		t.Fatal(err)
	}
	if len(commits) != 5 {
		t.Fatalf("%d commits, want 5: %+v", len(commits), commits)
	}
	var merges, coauthored int
	for _, c := range commits {
		if len(c.SHA) != 40 {
			t.Errorf("sha %q", c.SHA)
		}
		if c.Merge {
			merges++
			if c.Author != "erin@example.com" || c.Resolved {
				t.Errorf("merge %+v: want erin's clean merge", c)
			}
		}
		if len(c.CoAuthors) > 0 {
			coauthored++
			if c.Author != "alice@example.com" || c.CoAuthors[0] != "carol@example.com" {
				t.Errorf("co-authored commit %+v", c)
			}
		}
	}
	if merges != 1 || coauthored != 1 {
		t.Errorf("merges=%d coauthored=%d", merges, coauthored)
	}
}

// A merge that resolves a conflict carries changes of its own, so it is Resolved.
func TestRangeResolvedMerge(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_AUTHOR_NAME=x", "GIT_AUTHOR_EMAIL=x@example.com",
			"GIT_COMMITTER_NAME=x", "GIT_COMMITTER_EMAIL=x@example.com")
		if out, err := cmd.CombinedOutput(); err != nil && args[0] != "merge" {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	write := func(s string) { os.WriteFile(filepath.Join(dir, "f"), []byte(s), 0o644) }
	run("init", "-q", "-b", "main")
	write("base\n")
	run("add", "f")
	run("commit", "-qm", "base")
	run("tag", "v1")
	run("checkout", "-qb", "side")
	write("side\n")
	run("commit", "-qam", "side")
	run("checkout", "-q", "main")
	write("main\n")
	run("commit", "-qam", "main")
	run("merge", "-q", "side") // conflicts
	write("resolved\n")
	run("commit", "-qam", "merge side, resolved")
	run("tag", "v2")
	commits, err := git.Range(context.Background(), dir, "v1..v2")
	if err != nil {
		t.Fatal(err)
	}
	if !commits[0].Merge || !commits[0].Resolved {
		t.Errorf("newest commit %+v: want a resolved merge", commits[0])
	}
}

func TestRangeErrors(t *testing.T) {
	repo := chattest.Repo(t)
	ctx := context.Background()
	for rng, want := range map[string]string{
		"v2":          "want BASE..HEAD",
		"v1...v2":     "want BASE..HEAD",
		"..v2":        "want BASE..HEAD",
		"v1..nope":    `"nope" is not a commit`,
		"--all..v2":   "want BASE..HEAD",
		"v2..v2":      "has no commits",
		"v1..v2:file": "is not a commit",
	} {
		_, err := git.Range(ctx, repo, rng)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Range(%q) = %v, want %q", rng, err, want)
		}
	}
	if _, err := git.Range(ctx, t.TempDir(), "v1..v2"); err == nil {
		t.Error("range in a directory that is not a repository")
	}
}
