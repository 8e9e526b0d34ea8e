package main

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/shipbot/shipbot/bot"
	"github.com/shipbot/shipbot/bot/console"
	"github.com/shipbot/shipbot/bot/httpapi"
	"github.com/shipbot/shipbot/cmd/internal/cliutil"
)

//go:embed demo.yaml
var demoConfig []byte

// demoScript is the scripted conversation: who types what, after how long.
var demoScript = []struct {
	wait time.Duration
	line string
}{
	{1 * time.Second, "alice: !ready"},
	{1 * time.Second, "carol: !ready"},
	{1 * time.Second, "erin: !ship"},
	{1 * time.Second, "dave: !ship"},
	{500 * time.Millisecond, "dave: !who"},
	{3 * time.Second, "bob: !ready"}, // late: the reminder has gone out by now
	{1 * time.Second, "dave: !ship"},
	{1 * time.Second, "dave: !history"},
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	interactive := fs.Bool("interactive", false, "you type the lines (\"alice: !ready\", \"dave: !ship\")")
	speed := fs.Float64("speed", 1, "script speed factor (2 = twice as fast)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *speed <= 0 {
		return fmt.Errorf("--speed must be positive")
	}
	tmp, err := os.MkdirTemp("", "shipbot-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	cfg, err := ParseConfig("demo.yaml (embedded)", demoConfig)
	if err != nil {
		return err
	}
	cfg.DataDir = tmp
	cfg.Listen = "127.0.0.1:0"
	remind := time.Duration(float64(3*time.Second) / *speed)
	cfg.ReminderInterval = &remind

	log, err := cliutil.NewLogger(cliutil.LogConfig{Format: "console", Level: "warn"}, stderr)
	if err != nil {
		return err
	}
	in, script := io.Pipe()
	if *interactive {
		in, script = nil, nil
	}
	chat := &console.Adapter{In: in, Out: stdout, Channel: cfg.Channel, Echo: true}
	if *interactive {
		chat.In, chat.Echo = os.Stdin, false
	}
	token := randomToken()
	s, err := openServer(cfg, token, chat, clockwork.NewRealClock(), log)
	if err != nil {
		return err
	}
	s.stopWhenChatEnds = true
	defer s.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	fmt.Fprintf(stdout, "== shipbot demo: channel %s, API at http://%s, people: alice bob carol (committers), dave (release head), erin\n", cfg.Channel, s.Addr())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.Run(gctx) })
	g.Go(func() error {
		if script != nil {
			// Closing the script ends the console's input; the server then stops
			// once every line has been answered.
			defer script.Close()
		}
		c := &httpapi.Client{BaseURL: "http://" + s.Addr(), Token: token}
		art := make([]byte, 256<<10)
		rand.Read(art)
		meta := httpapi.ReleaseMeta{Version: "v2", Range: "v1..v2", Artifact: "app.tar.gz", CreatedBy: "demo CI",
			Commits: []bot.Commit{
				{SHA: "c3", Author: "alice@example.com", Subject: "checkout: retry card declines", CoAuthors: []string{"carol@example.com"}},
				{SHA: "c2", Author: "bob@example.com", Subject: "search: cache warmup"},
				{SHA: "c1", Author: "intern@contractor.example", Subject: "docs: typo"},
			}}
		fmt.Fprintln(stdout, "== CI registers release v2 (3 commits) with shipbot release create")
		if _, err := c.CreateRelease(gctx, meta, bytes.NewReader(art)); err != nil {
			return err
		}
		if *interactive {
			fmt.Fprintln(stdout, "== your turn: type lines like \"alice: !ready\", \"dave: !ship\", \"bob: !help\"; Ctrl-D or Ctrl-C ends")
			<-gctx.Done()
			return nil
		}
		for _, step := range demoScript {
			select {
			case <-gctx.Done():
				return nil
			case <-time.After(time.Duration(float64(step.wait) / *speed)):
			}
			if _, err := fmt.Fprintln(script, step.line); err != nil {
				return err
			}
		}
		return nil
	})
	err = g.Wait()
	log.Debug("demo finished", zap.Error(err))
	if err != nil {
		return err
	}
	if !*interactive {
		fmt.Fprintln(stdout, "== done: v2 is shipping. The rollout engine takes it from here (see README)")
	}
	return nil
}

func randomToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}
