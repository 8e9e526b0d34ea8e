package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/shipbot/shipbot/bot"
	"github.com/shipbot/shipbot/bot/git"
	"github.com/shipbot/shipbot/bot/httpapi"
)

func apiClient(server string) (*httpapi.Client, error) {
	token := os.Getenv(EnvAPIToken)
	if token == "" {
		return nil, fmt.Errorf("%s is not set: export the token shipbot serve was started with", EnvAPIToken)
	}
	if server == "" {
		server = os.Getenv(EnvURL)
	}
	if server == "" {
		server = "http://" + defaultListen
	}
	return &httpapi.Client{BaseURL: server, Token: token}, nil
}

func cmdRelease(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: shipbot release create|list [flags]")
	}
	switch args[0] {
	case "create":
		return cmdReleaseCreate(ctx, args[1:], stdout, stderr)
	case "list":
		fs := flag.NewFlagSet("release list", flag.ContinueOnError)
		fs.SetOutput(stderr)
		server := fs.String("server", "", "shipbot's URL (default $SHIPBOT_URL, else http://"+defaultListen+")")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		c, err := apiClient(*server)
		if err != nil {
			return err
		}
		rels, err := c.Releases(ctx)
		if err != nil {
			return err
		}
		for _, r := range rels {
			fmt.Fprintf(stdout, "%-12s %-12s %4d commits  %d/%d checked in  created %s\n", r.Version, r.State, r.Commits,
				r.ReadyCount(), len(r.Committers), r.CreatedAt.UTC().Format("2006-01-02 15:04:05Z"))
		}
		return nil
	default:
		return fmt.Errorf("unknown release command %q; use create or list", args[0])
	}
}

func cmdReleaseCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("release create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	version := fs.String("version", "", "release version, e.g. v42 (required)")
	artifact := fs.String("artifact", "", "the build: a local file to stream, or an http(s) URL shipbot downloads (required)")
	commits := fs.String("commits", "", "commit range BASE..HEAD, e.g. v41..v42 (required)")
	repo := fs.String("repo", ".", "git repository that holds the range")
	server := fs.String("server", "", "shipbot's URL (default $SHIPBOT_URL, else http://"+defaultListen+")")
	by := fs.String("created-by", "", "who or what registers it (default $USER)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case *version == "":
		return errors.New("--version is required")
	case !bot.ValidVersion(*version):
		return fmt.Errorf("--version %q: use 1-64 letters, digits, '.', '-', '_' or '+'", *version)
	case *artifact == "":
		return errors.New("--artifact is required")
	case *commits == "":
		return errors.New("--commits is required (e.g. v41..v42)")
	}
	c, err := apiClient(*server)
	if err != nil {
		return err
	}
	list, err := git.Range(ctx, *repo, *commits)
	if err != nil {
		return err
	}
	meta := httpapi.ReleaseMeta{Version: *version, Range: *commits, Commits: list, CreatedBy: *by}
	if meta.CreatedBy == "" {
		meta.CreatedBy = os.Getenv("USER")
	}
	var body io.Reader
	if strings.HasPrefix(*artifact, "http://") || strings.HasPrefix(*artifact, "https://") {
		meta.ArtifactURL = *artifact
		meta.Artifact = path.Base(strings.SplitN(*artifact, "?", 2)[0])
	} else {
		f, err := os.Open(*artifact)
		if err != nil {
			return fmt.Errorf("artifact: %w", err)
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return fmt.Errorf("artifact: %w", err)
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("artifact %s is not a regular file", *artifact)
		}
		meta.Artifact = filepath.Base(*artifact)
		body = f
	}
	rel, err := c.CreateRelease(ctx, meta, body)
	if err != nil {
		return fmt.Errorf("release %s not registered: %w", *version, err)
	}
	fmt.Fprintf(stdout, "registered %s: %d commits, %d committers to check in, artifact %s (%s, sha256 %s)\n",
		rel.Version, rel.Commits, len(rel.Committers), rel.Artifact.Name, bot.HumanBytes(rel.Artifact.Size), rel.Artifact.SHA256)
	if len(rel.Unmapped) > 0 {
		fmt.Fprintf(stdout, "unmapped emails (add them to people in shipbot's config): %s\n", strings.Join(rel.Unmapped, ", "))
	}
	return nil
}
