// Package git reads a release's commit range from a git repository with the git
// command: each commit's author, its Co-authored-by trailers, and whether a merge
// carries changes of its own.
package git

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/shipbot/shipbot/bot"
)

// MaxCommits bounds a range; a bigger one is almost always a mistyped base.
const MaxCommits = 10000

// Range returns the commits reachable from the range's head and not from its base,
// newest first. rng must be "BASE..HEAD"; both ends must resolve to commits.
func Range(ctx context.Context, repo, rng string) ([]bot.Commit, error) {
	base, head, ok := strings.Cut(rng, "..")
	if !ok || base == "" || head == "" || strings.HasPrefix(head, ".") || strings.HasPrefix(base, "-") || strings.HasPrefix(head, "-") {
		return nil, fmt.Errorf("commit range %q: want BASE..HEAD, e.g. v41..v42", rng)
	}
	for _, rev := range []string{base, head} {
		if _, err := run(ctx, repo, "rev-parse", "--verify", "--quiet", "--end-of-options", rev+"^{commit}"); err != nil {
			return nil, fmt.Errorf("commit range %s: %q is not a commit in %s", rng, rev, repo)
		}
	}
	// %x1e ends a record, %x1f separates fields. %P lists parents (two or more: a merge).
	out, err := run(ctx, repo, "log", "--no-color", "--format=%H%x1f%ae%x1f%P%x1f%s%x1f%(trailers:key=Co-authored-by,valueonly,separator=%x1d)%x1e",
		"--max-count", fmt.Sprint(MaxCommits+1), "--end-of-options", base+".."+head)
	if err != nil {
		return nil, fmt.Errorf("commit range %s: %w", rng, err)
	}
	var commits []bot.Commit
	for _, rec := range strings.Split(out, "\x1e") {
		rec = strings.TrimLeft(rec, "\n")
		if rec == "" {
			continue
		}
		f := strings.Split(rec, "\x1f")
		if len(f) != 5 {
			return nil, fmt.Errorf("commit range %s: unexpected git log output", rng)
		}
		c := bot.Commit{SHA: f[0], Author: strings.ToLower(f[1]), Subject: f[3]}
		c.Merge = len(strings.Fields(f[2])) > 1
		for _, t := range strings.Split(strings.TrimSpace(f[4]), "\x1d") {
			if e := trailerEmail(t); e != "" {
				c.CoAuthors = append(c.CoAuthors, e)
			}
		}
		if c.Merge {
			// A clean merge has an empty combined diff; a conflict resolution does not.
			d, err := run(ctx, repo, "diff-tree", "--cc", "--no-commit-id", "--format=", c.SHA)
			if err != nil {
				return nil, fmt.Errorf("commit range %s: %w", rng, err)
			}
			c.Resolved = strings.TrimSpace(d) != ""
		}
		commits = append(commits, c)
	}
	if len(commits) == 0 {
		return nil, fmt.Errorf("commit range %s has no commits", rng)
	}
	if len(commits) > MaxCommits {
		return nil, fmt.Errorf("commit range %s has more than %d commits; check the base", rng, MaxCommits)
	}
	return commits, nil
}

// trailerEmail takes the address out of "Name <email>".
func trailerEmail(v string) string {
	v = strings.TrimSpace(v)
	i, j := strings.LastIndexByte(v, '<'), strings.LastIndexByte(v, '>')
	if i < 0 || j < i+2 {
		return ""
	}
	e := strings.ToLower(strings.TrimSpace(v[i+1 : j]))
	if !strings.Contains(e, "@") {
		return ""
	}
	return e
}

func run(ctx context.Context, repo string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", repo}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("git %s: %s", args[0], strings.TrimSpace(stderr.String()))
		}
		return "", fmt.Errorf("run git: %w", err)
	}
	return stdout.String(), nil
}
