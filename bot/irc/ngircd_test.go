package irc_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shipbot/shipbot/bot/chattest"
)

// ngircd is a real IRC server (the Debian package) on a free loopback port.
type ngircd struct {
	t    testing.TB
	dir  string
	port int
	cmd  *exec.Cmd
}

func startNgircd(t testing.TB) *ngircd {
	t.Helper()
	if _, err := exec.LookPath("ngircd"); err != nil {
		if _, err := os.Stat("/usr/sbin/ngircd"); err != nil {
			t.Fatal("ngircd is not installed: run make deps")
		}
	}
	n := &ngircd{t: t, dir: t.TempDir(), port: chattest.FreePort(t)}
	os.MkdirAll(filepath.Join(n.dir, "conf.d"), 0o755)
	conf := fmt.Sprintf(`[Global]
	Name = irc.shipbot.test
	Info = shipbot test server
	Listen = 127.0.0.1
	Ports = %d
	MotdPhrase = test
	PidFile = %s/ngircd.pid
[Limits]
	MaxNickLength = 30
	MaxPenaltyTime = 0
	MaxConnectionsIP = 0
	PingTimeout = 120
[Options]
	PAM = no
	Ident = no
	DNS = no
	IncludeDir = %s/conf.d
`, n.port, n.dir, n.dir)
	if err := os.WriteFile(filepath.Join(n.dir, "ngircd.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *ngircd) start() {
	n.t.Helper()
	bin := "ngircd"
	if _, err := exec.LookPath(bin); err != nil {
		bin = "/usr/sbin/ngircd"
	}
	n.cmd = exec.Command(bin, "-n", "-f", filepath.Join(n.dir, "ngircd.conf"))
	log, _ := os.Create(filepath.Join(n.dir, "ngircd.log"))
	n.cmd.Stdout, n.cmd.Stderr = log, log
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", n.port))
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("ngircd did not listen: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (n *ngircd) stop() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { n.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		n.cmd.Process.Kill()
		<-done
	}
	n.cmd = nil
}

// ii is a real IRC client, one person in the channel. It writes what it sees to
// files and reads what to say from a fifo.
type ii struct {
	t    testing.TB
	nick string
	dir  string
	cmd  *exec.Cmd
}

const channel = "#deploy"

func startII(t testing.TB, n *ngircd, nick string) *ii {
	t.Helper()
	c := &ii{t: t, nick: nick, dir: t.TempDir()}
	c.cmd = exec.Command("ii", "-s", "127.0.0.1", "-p", fmt.Sprint(n.port), "-n", nick, "-f", nick, "-i", c.dir)
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("ii: %v (run make deps)", err)
	}
	t.Cleanup(c.stop)
	in := filepath.Join(c.dir, "127.0.0.1", "in")
	c.waitFor(filepath.Join(c.dir, "127.0.0.1", "out"), "End of MOTD", 10*time.Second)
	c.write(in, "/j "+channel)
	c.waitFor(c.out(), "has joined "+channel, 10*time.Second)
	return c
}

func (c *ii) out() string { return filepath.Join(c.dir, "127.0.0.1", channel, "out") }

func (c *ii) write(path, line string) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err == nil {
			_, err = f.WriteString(line + "\n")
			f.Close()
			if err != nil {
				c.t.Fatalf("ii %s: write: %v", c.nick, err)
			}
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("ii %s: %v", c.nick, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *ii) say(text string) { c.write(filepath.Join(c.dir, "127.0.0.1", channel, "in"), text) }

func (c *ii) raw(text string) { c.write(filepath.Join(c.dir, "127.0.0.1", "in"), text) }

func (c *ii) waitFor(path, sub string, d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), sub) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("ii %s: no %q in %s within %s:\n%s", c.nick, sub, path, d, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// botLines reads the bot's lines from this client's channel log ("TS <shipbot> text").
func (c *ii) botLines() []string {
	b, _ := os.ReadFile(c.out())
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if _, rest, ok := strings.Cut(l, " <shipbot> "); ok {
			out = append(out, rest)
		}
	}
	return out
}

func (c *ii) stop() {
	if c.cmd.Process != nil {
		c.cmd.Process.Kill()
		c.cmd.Wait()
	}
}

// ircConfig is a shipbot config on ngircd where people are known by hostmask (ngircd
// gives no accounts).
func ircConfig(dataDir string, port int) string { return ircConfigPaced(dataDir, port, 20) }

// ircConfigPaced sets the bot's send pace (lines per second, and as many in a burst).
func ircConfigPaced(dataDir string, port int, lps int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir: %s\nchannel: %q\nchat: irc\nreminder_interval: 2s\nlog: {format: json, level: debug}\n", dataDir, channel)
	fmt.Fprintf(&b, "irc:\n  server: 127.0.0.1\n  port: %d\n  nick: shipbot\n  lines_per_second: %d\n  burst: %d\n  reconnect_max: 2s\n", port, lps, lps)
	b.WriteString("people:\n")
	for _, p := range []string{chattest.Alice, chattest.Bob, chattest.Carol, chattest.Dave, chattest.Erin} {
		fmt.Fprintf(&b, "  - name: %s\n    emails: [%s]\n    irc: {masks: [\"%s!~%s@127.0.0.1\"]}\n", p, chattest.Email(p), p, p)
	}
	b.WriteString("roles:\n  release_heads: [dave]\n")
	return b.String()
}

type ircHarness struct {
	sb       *chattest.Shipbot
	people   map[string]*ii
	observer *ii
	repo     string
	art      string
}

func (h *ircHarness) Mention(p string) string               { return p }
func (h *ircHarness) Say(t testing.TB, person, text string) { h.people[person].say(text) }
func (h *ircHarness) BotLines() []string                    { return h.observer.botLines() }
func (h *ircHarness) CreateRelease(t testing.TB, version string) {
	t.Helper()
	out, err := h.sb.CLI(context.Background(), "release", "create", "--version", version, "--artifact", h.art,
		"--commits", "v1..v2", "--repo", h.repo)
	if err != nil {
		t.Fatalf("release create: %v\n%s", err, out)
	}
}

func artifact(t testing.TB) string {
	p := filepath.Join(t.TempDir(), "app.tar.gz")
	os.WriteFile(p, []byte(strings.Repeat("shipbot", 1000)), 0o644)
	return p
}

// waitJoined waits until the bot is in the channel, as the observer sees it.
func waitJoined(t testing.TB, obs *ii) {
	obs.waitFor(obs.out(), "shipbot(~shipbot@127.0.0.1) has joined", 20*time.Second)
}

// TestCheckInRoundIRC runs the shared conversation through a real ngircd with ii
// clients as the people, then checks hostmask identity and a server restart.
func TestCheckInRoundIRC(t *testing.T) {
	bin := chattest.Build(t, "./cmd/shipbot")
	n := startNgircd(t)
	data := t.TempDir()
	obs := startII(t, n, "observer")
	sb := chattest.StartShipbot(t, bin, ircConfig(data, n.port), data)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("shipbot log:\n%s", sb.Stderr())
		}
	})
	waitJoined(t, obs)
	h := &ircHarness{sb: sb, observer: obs, people: map[string]*ii{}, repo: chattest.Repo(t), art: artifact(t)}
	for _, p := range []string{chattest.Alice, chattest.Bob, chattest.Carol, chattest.Dave, chattest.Erin, chattest.Mallory} {
		h.people[p] = startII(t, n, p)
	}
	chattest.Run(t, h)
	tr := chattest.TranscriptOf(h)

	// mallory takes the nick dave once dave is gone: the nick matches dave's mask,
	// the user@host does not, so !ship is refused and nothing changes.
	h.people[chattest.Dave].stop()
	mal := h.people[chattest.Mallory]
	for i := 0; ; i++ {
		mal.raw("/n dave") // refused while the server still holds dave's old connection
		time.Sleep(300 * time.Millisecond)
		if b, _ := os.ReadFile(filepath.Join(mal.dir, "127.0.0.1", "out")); strings.Contains(string(b), `changed nick to "dave"`) {
			break
		}
		if i == 30 {
			b, _ := os.ReadFile(filepath.Join(mal.dir, "127.0.0.1", "out"))
			t.Fatalf("mallory could not take the nick dave (ii state %v):\n%s", mal.cmd.ProcessState, b)
		}
	}
	h.people[chattest.Mallory].say("!ship --force trust me")
	tr.Expect(t, "dave:", "do not know you", "~mallory@127.0.0.1")

	// The server dies mid-conversation. What the bot says meanwhile is queued and
	// delivered once it has reconnected and rejoined. The new observer must be in the
	// channel before the bot comes back to see it; when the bot wins that race the
	// round is inconclusive and is played again with a new release.
	for round := 3; ; round++ {
		n.stop()
		version := fmt.Sprintf("v%d", round)
		h.CreateRelease(t, version)
		n.start()
		obs := startII(t, n, fmt.Sprintf("observer%d", round))
		waitJoined(t, obs)
		b, _ := os.ReadFile(obs.out())
		if strings.Index(string(b), "observer") > strings.Index(string(b), "shipbot(") || !strings.Contains(string(b), "has joined") {
			t.Logf("round %d: the bot rejoined before the observer; again", round)
			if round == 6 {
				t.Fatal("the bot always rejoined before the observer")
			}
			continue
		}
		h.observer = obs
		tr := chattest.NewTranscript(h)
		tr.Expect(t, "release "+version, "alice", "bob", "carol") // said while the server was down
		break
	}
}
