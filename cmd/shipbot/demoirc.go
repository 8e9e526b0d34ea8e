package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/lrstanley/girc"
	"go.uber.org/zap"

	"github.com/shipbot/shipbot/bot"
	"github.com/shipbot/shipbot/bot/irc"
)

// demoPeople are the demo's people; on IRC each is known by nick!*@127.0.0.1.
var demoPeople = []string{"alice", "bob", "carol", "dave", "erin"}

// runDemoIRC is the demo with the channel on a local ngircd: the scripted people
// are IRC clients, and anyone can join #deploy with their own client and watch or,
// with --interactive, take a person's nick and type.
func runDemoIRC(ctx context.Context, o demoOptions, stdout, stderr io.Writer) error {
	bin, err := exec.LookPath("ngircd")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/ngircd"); serr != nil {
			return errors.New("--irc runs a local ngircd, and none is installed: apt-get install ngircd (or run the demo without --irc)")
		}
		bin = "/usr/sbin/ngircd"
	}
	dir, err := os.MkdirTemp("", "shipbot-demo-irc-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	port, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	stop, err := startNgircd(ctx, bin, dir, port)
	if err != nil {
		return err
	}
	defer stop()

	term := newDemoTerm(stdout)
	d := &demo{o: o, term: term}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// A viewer client prints the channel into this terminal, which is also how the
	// script hears the bot.
	viewer := girc.New(girc.Config{Server: "127.0.0.1", Port: port, Nick: "demo-view", User: "view", Name: "shipbot demo viewer", AllowFlood: true})
	viewer.Handlers.AddBg(girc.PRIVMSG, func(c *girc.Client, e girc.Event) {
		if e.Source != nil && len(e.Params) > 0 && e.Params[0] == "#deploy" {
			fmt.Fprintf(term, "%s: %s\n", e.Source.Name, bot.Clean(e.Last(), 500))
		}
	})
	clients := map[string]*girc.Client{"demo-view": viewer}
	if !o.interactive {
		for _, p := range demoPeople {
			clients[p] = girc.New(girc.Config{Server: "127.0.0.1", Port: port, Nick: p, User: p, Name: p, AllowFlood: true})
		}
		d.say = func(person, text string) error {
			c := clients[person]
			if c == nil || !c.IsConnected() {
				return fmt.Errorf("%s is not on IRC", person)
			}
			c.Cmd.Message("#deploy", text) // the viewer prints it
			return nil
		}
	}
	var joined sync.WaitGroup
	for nick, c := range clients {
		joined.Add(1)
		var once sync.Once
		c.Handlers.AddBg(girc.CONNECTED, func(c *girc.Client, e girc.Event) { c.Cmd.Join("#deploy") })
		c.Handlers.AddBg(girc.JOIN, func(c *girc.Client, e girc.Event) {
			if e.Source != nil && e.Source.Name == nick {
				once.Do(joined.Done)
			}
		})
		go func() {
			for ctx.Err() == nil {
				if err := c.Connect(); err != nil && ctx.Err() == nil {
					time.Sleep(time.Second)
				}
			}
		}()
		defer c.Close()
	}
	allIn := make(chan struct{})
	go func() { joined.Wait(); close(allIn) }()
	select {
	case <-allIn:
	case <-ctx.Done():
		return nil
	case <-time.After(20 * time.Second):
		return fmt.Errorf("the demo's IRC clients did not join #deploy on 127.0.0.1:%d within 20s", port)
	}
	d.hint = "join #deploy on 127.0.0.1:" + strconv.Itoa(port) + " with /nick alice, bob, carol, erin or dave, and type the lines"
	term.Printf("== IRC: ngircd on 127.0.0.1:%d; join #deploy with any client, e.g. irssi -c 127.0.0.1 -p %d, then /join #deploy\n", port, port)

	tweak := func(c *Config) {
		c.Chat = "irc"
		colors := false
		c.IRC = &irc.Config{Server: "127.0.0.1", Port: port, Nick: "shipbot", LinesPerSecond: 10, Burst: 20, Colors: &colors}
		for i := range c.People {
			c.People[i].IRC.Masks = []string{c.People[i].Name + "!*@127.0.0.1"}
			c.People[i].IRC.Nick = c.People[i].Name
		}
	}
	return d.run(ctx, tweak, func(log *zap.Logger) (bot.Adapter, error) {
		cfg := *func() *Config { c := &Config{}; tweak(c); return c }().IRC
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		return irc.New(cfg, "#deploy", log.Named("irc"))
	})
}

// startNgircd runs ngircd on 127.0.0.1:port with a config for a local demo
// (no flood penalty, any number of connections from loopback).
func startNgircd(ctx context.Context, bin, dir string, port int) (stop func(), err error) {
	conf := fmt.Sprintf(`[Global]
	Name = irc.shipbot.demo
	Info = shipbot demo
	Listen = 127.0.0.1
	Ports = %d
	MotdPhrase = shipbot demo
	PidFile = %s/ngircd.pid
[Limits]
	MaxNickLength = 30
	MaxPenaltyTime = 0
	MaxConnectionsIP = 0
[Options]
	PAM = no
	Ident = no
	DNS = no
`, port, dir)
	cfgPath := filepath.Join(dir, "ngircd.conf")
	if err := os.WriteFile(cfgPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "ngircd.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-n", "-f", cfgPath)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start ngircd: %w", err)
	}
	stop = func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		log.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return stop, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			out, _ := os.ReadFile(log.Name())
			return nil, fmt.Errorf("ngircd did not listen on 127.0.0.1:%d: %v\n%s", port, err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
