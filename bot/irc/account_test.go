package irc_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/shipbot/shipbot/bot"
	"github.com/shipbot/shipbot/bot/irc"
	"github.com/shipbot/shipbot/store"
)

// fakeServer is a scripted IRC server that offers IRCv3 account-tag and SASL, which
// ngircd does not. It speaks just enough of the protocol for one client.
type fakeServer struct {
	t    *testing.T
	ln   net.Listener
	caps string

	mu     sync.Mutex
	conn   net.Conn
	sasl   string   // the decoded AUTHENTICATE payload
	said   []string // PRIVMSG texts from the bot to the channel
	joined chan struct{}
}

func newFakeServer(t *testing.T, caps string) *fakeServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{t: t, ln: ln, caps: caps, joined: make(chan struct{})}
	t.Cleanup(func() { ln.Close() })
	go s.serve()
	return s
}

func (s *fakeServer) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

func (s *fakeServer) send(line string) {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	fmt.Fprintf(c, "%s\r\n", line)
}

func (s *fakeServer) serve() {
	c, err := s.ln.Accept()
	if err != nil {
		return
	}
	s.mu.Lock()
	s.conn = c
	s.mu.Unlock()
	defer c.Close()
	nick := "shipbot"
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "CAP":
			switch {
			case len(f) > 1 && f[1] == "LS":
				s.send(":fake CAP * LS :" + s.caps)
			case len(f) > 1 && f[1] == "REQ":
				_, req, _ := strings.Cut(line, ":")
				s.send(":fake CAP * ACK :" + req)
			case len(f) > 1 && f[1] == "END":
				s.send(":fake 001 " + nick + " :Welcome")
				s.send(":fake 005 " + nick + " CASEMAPPING=rfc1459 CHANTYPES=# :are supported")
				s.send(":fake 422 " + nick + " :No MOTD")
			}
		case "AUTHENTICATE":
			if f[1] == "PLAIN" {
				s.send("AUTHENTICATE +")
				continue
			}
			b, _ := base64.StdEncoding.DecodeString(f[1])
			s.mu.Lock()
			s.sasl = string(b)
			s.mu.Unlock()
			s.send(":fake 900 " + nick + " shipbot!bot@fake shipbot :You are now logged in as shipbot")
			s.send(":fake 903 " + nick + " :SASL authentication successful")
		case "NICK":
			nick = f[1]
		case "JOIN":
			s.send(":" + nick + "!bot@fake JOIN " + f[1] + " shipbot :shipbot")
			s.send(":fake 366 " + nick + " " + f[1] + " :End of NAMES")
			close(s.joined)
		case "PING":
			s.send(":fake PONG fake :" + strings.TrimPrefix(f[1], ":"))
		case "PRIVMSG":
			if _, text, ok := strings.Cut(line, " :"); ok {
				s.mu.Lock()
				s.said = append(s.said, text)
				s.mu.Unlock()
			}
		}
	}
}

func (s *fakeServer) expect(sub ...string) string {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	seen := 0
	for {
		s.mu.Lock()
		said := append([]string(nil), s.said...)
		s.mu.Unlock()
		for ; seen < len(said); seen++ {
			ok := true
			for _, x := range sub {
				ok = ok && strings.Contains(said[seen], x)
			}
			if ok {
				s.mu.Lock()
				s.said = s.said[seen+1:]
				s.mu.Unlock()
				return said[seen]
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the bot never said %q; it said %q", sub, said)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAccountIdentity(t *testing.T) {
	t.Setenv(irc.EnvPassword, "hunter2")
	srv := newFakeServer(t, "account-tag account-notify extended-join sasl=PLAIN,EXTERNAL multi-prefix")
	dir, err := bot.NewDirectory([]bot.Person{
		{Name: "alice", Emails: []string{"alice@example.com"}, IRC: bot.IRCIdentity{Account: "alice", Masks: []string{"alice!~alice@trusted.example"}}},
		{Name: "dave", Emails: []string{"dave@example.com"}, IRC: bot.IRCIdentity{Account: "dave"}},
	}, []string{"dave"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cfg := irc.Config{Server: "127.0.0.1", Port: srv.port(), SASL: "plain", Account: "shipbot", LinesPerSecond: 50, Burst: 50}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := irc.New(cfg, "#deploy", zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	b := bot.New(dir, db, a, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx, b) }()
	defer func() { cancel(); <-done }()
	select {
	case <-srv.joined:
	case <-time.After(10 * time.Second):
		t.Fatal("the bot never joined")
	}
	srv.mu.Lock()
	sasl := srv.sasl
	srv.mu.Unlock()
	if sasl != "shipbot\x00shipbot\x00hunter2" {
		t.Errorf("SASL PLAIN payload %q", sasl)
	}
	if _, err := b.CreateRelease(ctx, bot.NewRelease{Version: "v1", Range: "a..b", Commits: []bot.Commit{{SHA: "1", Author: "alice@example.com"}}}); err != nil {
		t.Fatal(err)
	}
	srv.expect("release v1", "alice")

	// The account tag decides, whatever the nick and host say.
	srv.send("@account=alice :someone!x@anywhere.example PRIVMSG #deploy :!ready")
	srv.expect("alice:", "checked in for v1")
	srv.send("@account=mallory :dave!~dave@dave-laptop PRIVMSG #deploy :!ship")
	srv.expect("do not know you", "account:mallory")
	srv.send("@account=dave :d!d@d PRIVMSG #deploy :!ship")
	srv.expect("dave:", "shipping v1")
	// Without a tag (not logged in), the full mask is the identity.
	srv.send(":alice!~alice@trusted.example PRIVMSG #deploy :!history")
	srv.expect("alice:", "last 1 release")
	srv.send(":alice!~alice@elsewhere.example PRIVMSG #deploy :!history")
	srv.expect("do not know you")
	// Lines in other channels and private messages are not commands.
	srv.send("@account=dave :d!d@d PRIVMSG #other :!ship")
	srv.send("@account=dave :d!d@d PRIVMSG shipbot :!help")
	srv.send("@account=alice :a!a@a PRIVMSG #deploy :!who")
	if l := srv.expect("alice:"); strings.Contains(l, "commands") {
		t.Errorf("answered a private message: %q", l)
	}
}

// TestSASLRequired: with SASL configured, a server that does not offer it is left
// rather than used unauthenticated.
func TestSASLRequired(t *testing.T) {
	t.Setenv(irc.EnvPassword, "hunter2")
	srv := newFakeServer(t, "multi-prefix")
	cfg := irc.Config{Server: "127.0.0.1", Port: srv.port(), SASL: "plain"}
	cfg.Validate()
	a, err := irc.New(cfg, "#deploy", zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = a.Run(ctx, nil)
	if err == nil || !strings.Contains(err.Error(), "does not offer it") {
		t.Errorf("Run = %v", err)
	}
}
