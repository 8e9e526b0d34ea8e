// Command shipbot is the chat-ops release coordinator: it runs the bot in the release
// channel and the HTTP API (serve), registers releases from CI (release create),
// validates configs (check-config), and plays a scripted demo (demo).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/shipbot/shipbot/distributor"
)

const usage = `shipbot: chat-ops releases: check-ins, !ship, peer-to-peer push, tiered rollout.

usage:
  shipbot serve --config FILE          run the bot and the HTTP API
  shipbot release create --version V --artifact FILE|URL --commits A..B [--repo DIR]
                                       register a release with a running shipbot
  shipbot release list                 list recent releases
  shipbot fleet hosts                  the enrolled hosts: rack, staged releases, active release, health
  shipbot fleet set [--hosts a,b] [--stage r1,r2] [--add-stage r3] [--active r2]
                                       change hosts' desired state
  shipbot check-config FILE            validate a config; non-zero exit on error
  shipbot keygen [--dir DIR]           write the manifest signing key pair (shipbot.key, shipbot.pub)
  shipbot demo                         a scripted check-in round in this terminal

environment:
  SHIPBOT_API_TOKEN   bearer token of the HTTP API (serve and release need it)
  SHIPBOT_URL         where release commands find shipbot (default http://127.0.0.1:8080)
  SHIPBOT_FLEET_TOKEN the agents' bearer token; setting it turns the fleet API on
  SHIPBOT_SIGNING_KEY_FILE  the shipbot.key manifests are signed with
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "shipbot:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "serve":
		return cmdServe(ctx, args[1:], stdin, stdout, stderr)
	case "release":
		return cmdRelease(ctx, args[1:], stdout, stderr)
	case "fleet":
		return cmdFleet(ctx, args[1:], stdout, stderr)
	case "check-config":
		return cmdCheckConfig(args[1:], stdout)
	case "keygen":
		return cmdKeygen(args[1:], stdout, stderr)
	case "demo":
		return cmdDemo(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

func cmdCheckConfig(args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: shipbot check-config FILE")
	}
	c, err := LoadConfig(args[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok (%d people, %d release heads, chat %s, channel %s)\n",
		args[0], len(c.People), len(c.Roles.ReleaseHeads), c.Chat, c.Channel)
	return nil
}

func cmdKeygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", ".", "directory for shipbot.key (private, mode 0600) and shipbot.pub")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pub, key, err := distributor.WriteKeys(*dir)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	b, err := os.ReadFile(pub)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (keep it secret: shipbot signs manifests with it)\nwrote %s\npublic key for shipagent's config: %s", key, pub, b)
	return nil
}
