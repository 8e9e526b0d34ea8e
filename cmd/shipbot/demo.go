package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/shipbot/shipbot/bot"
	"github.com/shipbot/shipbot/bot/console"
	"github.com/shipbot/shipbot/bot/httpapi"
	"github.com/shipbot/shipbot/cmd/internal/cliutil"
	"github.com/shipbot/shipbot/distributor"
	"github.com/shipbot/shipbot/distributor/fleet"
)

//go:embed demo.yaml
var demoConfig []byte

// The demo's releases: v1 is what the fleet runs at the start, v2 a good build,
// v3 a bad one (a fifth of its requests fail).
const (
	behaviourGood = `{"error_rate": 0, "latency_ms": 5}`
	behaviourBad  = `{"error_rate": 0.2, "latency_ms": 5}`
)

type demoOptions struct {
	interactive bool
	irc         bool
	hosts       int
	racks       int
	speed       float64
	padMiB      int
	rate        string
	binDir      string
	keep        bool
}

// cmdDemo runs a whole release on this machine: shipbot with the console as the
// channel, a fleet of real shipagents running demoapp, a good release that goes to
// every host and a bad one that the canary catches and rolls back.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o demoOptions
	fs.BoolVar(&o.interactive, "interactive", false, "you type the people's lines (\"alice: !ready\", \"dave: !ship\")")
	fs.BoolVar(&o.irc, "irc", false, "run the channel on a local ngircd, so you can join it with any IRC client")
	fs.IntVar(&o.hosts, "hosts", 12, "how many agents (servers) to start")
	fs.IntVar(&o.racks, "racks", 3, "how many racks they are spread over")
	fs.Float64Var(&o.speed, "speed", 1, "speed factor for the script's pauses and the bake times (2 = twice as fast)")
	fs.IntVar(&o.padMiB, "artifact-mib", 12, "MiB of assets in each release, so the push has bytes to move")
	fs.StringVar(&o.rate, "download-rate", "3MiB", "each host's download cap per second, so the push is visible")
	fs.StringVar(&o.binDir, "bin", "", "where shipagent and demoapp are (default: next to this shipbot)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs, stores) for a look afterwards")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case o.speed <= 0:
		return errors.New("--speed must be positive")
	case o.hosts < 2 || o.hosts > 200:
		return errors.New("--hosts: from 2 to 200")
	case o.racks < 1 || o.racks > o.hosts:
		return errors.New("--racks: from 1 to the number of hosts")
	case o.padMiB < 0 || o.padMiB > 1024:
		return errors.New("--artifact-mib: from 0 to 1024")
	}
	if _, err := cliutil.ParseByteSize(o.rate); err != nil || o.rate == "" {
		return fmt.Errorf("--download-rate: %w", err)
	}
	if o.irc {
		return runDemoIRC(ctx, o, stdout, stderr)
	}
	d := &demo{o: o, term: newDemoTerm(stdout)}
	return d.run(ctx, nil, nil)
}

type demo struct {
	o      demoOptions
	term   *demoTerm
	s      *server
	api    *httpapi.Client
	tmp    string
	agents []*demoAgent
	// say types a person's line into the channel (the scripted people).
	say func(person, text string) error
	// hint tells an interactive user what to type, naming people the way the
	// channel knows them.
	hint string
}

// run sets up everything, plays the release story, and tears everything down,
// also when ctx is cancelled (Ctrl-C). newChat is nil for the console; otherwise
// it makes the adapter (and sets d.say unless interactive), after tweak has
// adjusted the embedded config.
func (d *demo) run(ctx context.Context, tweak func(*Config), newChat func(*zap.Logger) (bot.Adapter, error)) (err error) {
	o := d.o
	start := time.Now()
	binDir := o.binDir
	if binDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		binDir = filepath.Dir(exe)
	}
	agentBin, appBin := filepath.Join(binDir, "shipagent"), filepath.Join(binDir, "demoapp")
	for _, p := range []string{agentBin, appBin} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%s not found: the demo runs real agents; build them with `make demo` (it builds shipbot, shipagent and demoapp into bin/), or point --bin at them", p)
		}
	}
	d.tmp, err = os.MkdirTemp("", "shipbot-demo-")
	if err != nil {
		return err
	}
	defer func() {
		if o.keep {
			d.term.Printf("== kept %s (stores, agent logs)\n", d.tmp)
			return
		}
		os.RemoveAll(d.tmp)
	}()

	cfg, err := ParseConfig("demo.yaml (embedded)", demoConfig)
	if err != nil {
		return err
	}
	if tweak != nil {
		tweak(cfg)
	}
	cfg.DataDir = filepath.Join(d.tmp, "shipbot")
	cfg.Listen = "127.0.0.1:0"
	remind := time.Duration(float64(4*time.Second) / o.speed)
	cfg.ReminderInterval = &remind
	for i := range cfg.Rollout.Tiers {
		cfg.Rollout.Tiers[i].Bake = time.Duration(float64(cfg.Rollout.Tiers[i].Bake) / o.speed)
	}
	pub, key, err := distributor.GenerateKey()
	if err != nil {
		return err
	}
	sec := secrets{APIToken: randomToken(), FleetToken: randomToken(), SigningKey: key}
	logFile, err := os.Create(filepath.Join(d.tmp, "shipbot.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	log, err := cliutil.NewLogger(cliutil.LogConfig{Format: "json", Level: "info"}, logFile)
	if err != nil {
		return err
	}

	var script io.WriteCloser
	var chat bot.Adapter
	if newChat != nil {
		if chat, err = newChat(log); err != nil {
			return err
		}
	} else {
		c := &console.Adapter{Out: d.term, Channel: cfg.Channel, Echo: true}
		if o.interactive {
			c.In, c.Echo = os.Stdin, false
		} else {
			in, w := io.Pipe()
			c.In, script = in, w
			d.say = func(person, text string) error {
				_, err := fmt.Fprintf(w, "%s: %s\n", person, text)
				return err
			}
		}
		d.hint = "type lines such as \"alice: !ready\" and \"dave: !ship\""
		chat = c
	}
	d.s, err = openServer(cfg, sec, chat, clockwork.NewRealClock(), log)
	if err != nil {
		return err
	}
	d.s.stopWhenChatEnds = o.interactive && newChat == nil // Ctrl-D ends an interactive console demo
	defer d.s.Close()
	d.api = &httpapi.Client{BaseURL: "http://" + d.s.Addr(), Token: sec.APIToken}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	finished := false
	g.Go(func() error { return d.s.Run(gctx) })
	g.Go(func() error {
		defer cancel() // the story is over: stop the server
		if script != nil {
			defer script.Close()
		}
		defer d.stopAgents()
		err := d.story(gctx, agentBin, appBin, distributor.EncodePublicKey(pub), sec.FleetToken, start)
		finished = err == nil
		return err
	})
	err = g.Wait()
	switch {
	case finished:
		return nil
	case errors.Is(err, errChatEnded) || (err == nil || errors.Is(err, context.Canceled)) && ctx.Err() != nil:
		d.term.Printf("== stopped early: every agent and demoapp is stopped, the temp dir removed\n")
		return nil
	case err != nil:
		d.term.Printf("== the demo failed: %v\n   shipbot's log: %s (kept)\n", err, logFile.Name())
		o.keep = true
	}
	return err
}

// stopAgents stops every agent and its demoapp, in parallel.
func (d *demo) stopAgents() {
	var g errgroup.Group
	for _, a := range d.agents {
		g.Go(func() error { a.stop(3 * time.Second); return nil })
	}
	g.Wait()
}

// story is the release story: bootstrap on v1, v2 good, v3 bad, the summary.
func (d *demo) story(ctx context.Context, agentBin, appBin, pub, fleetToken string, start time.Time) error {
	o, t := d.o, d.term
	t.Printf("== shipbot demo: channel #deploy; the dashboard is at http://%s/ (open it now)\n", d.s.Addr())
	t.Printf("== people: alice, bob, carol, erin commit; dave is the release head\n")
	t.Printf("== starting %d shipagents in %d racks, each running demoapp (logs under %s)\n", o.hosts, o.racks, d.tmp)
	for i := 0; i < o.hosts; i++ {
		rack := fmt.Sprintf("rack%d", i%o.racks+1)
		name := fmt.Sprintf("web-%s-%02d", strings.TrimPrefix(rack, "rack"), i/o.racks+1)
		a, err := startDemoAgent(agentBin, filepath.Join(d.tmp, "hosts"), name, rack, "http://"+d.s.Addr(), pub, fleetToken, o.rate)
		if err != nil {
			return err
		}
		d.agents = append(d.agents, a)
	}
	f := d.s.push.fleet
	if err := waitFleet(ctx, f, 30*time.Second, func(hs []fleet.HostState) bool { return len(hs) == o.hosts }); err != nil {
		return fmt.Errorf("the agents did not enrol: %w", err)
	}

	// The fleet starts on v1, installed the way an operator would: fleet set.
	mark := d.term.Mark()
	if err := d.register(ctx, appBin, "v1", behaviourGood, []bot.Commit{{SHA: "9f00d1e", Author: "dave@example.com", Subject: "the service as it runs today"}}); err != nil {
		return err
	}
	if _, _, err := d.wait(ctx, mark, "v1 is up for check-in"); err != nil {
		return err
	}
	if err := d.say0(ctx, "dave", "!cancel v1"); err != nil { // it is already out there
		return err
	}
	t.Printf("== installing v1 on every host (shipbot fleet set --stage v1 --active v1)\n")
	if err := f.SetDesired(ctx, nil, func(_ string, dd *fleet.Desired) { dd.Stage, dd.Active = []string{"v1"}, "v1" }); err != nil {
		return err
	}
	if _, err := d.watchPush(ctx, "v1"); err != nil {
		return err
	}
	if err := waitFleet(ctx, f, 60*time.Second, allActive("v1", o.hosts)); err != nil {
		return fmt.Errorf("v1 did not reach every host: %w", err)
	}
	var err error
	bootstrapped := time.Now()

	// v2: a good build.
	t.Printf("\n== CI registers v2: 3 commits by alice, bob and carol\n")
	v2Commits := []bot.Commit{
		{SHA: "c3a1e07", Author: "alice@example.com", Subject: "checkout: retry card declines", CoAuthors: []string{"carol@example.com"}},
		{SHA: "b7d2f11", Author: "bob@example.com", Subject: "search: cache warm-up"},
		{SHA: "a90c4d2", Author: "intern@contractor.example", Subject: "docs: typo"},
	}
	if err := d.register(ctx, appBin, "v2", behaviourGood, v2Commits); err != nil {
		return err
	}
	if _, mark, err = d.wait(ctx, mark, "v2 is up for check-in"); err != nil {
		return err
	}
	early := []line{{1, "alice", "!ready"}, {1, "carol", "!ready"}, {1, "dave", "!ship"}} // refused: bob is missing
	late := []line{{1, "bob", "!ready"}, {1, "dave", "!ship"}}
	if d.say == nil {
		if err := d.play(ctx, append(early, late...)); err != nil { // one hint for the round
			return err
		}
	} else {
		if err := d.play(ctx, early); err != nil {
			return err
		}
		if _, mark, err = d.wait(ctx, mark, "reminder"); err != nil { // bob is late, and reminded
			return err
		}
		if err := d.play(ctx, late); err != nil {
			return err
		}
	}
	if _, mark, err = d.wait(ctx, mark, "shipping v2"); err != nil {
		return err
	}
	v2Ship := time.Now()
	v2Push, err := d.watchPush(ctx, "v2")
	if err != nil {
		return err
	}
	if _, mark, err = d.wait(ctx, mark, "v2: tier a2 healthy"); err != nil {
		return err
	}
	if _, mark, err = d.wait(ctx, mark, "v2 is done on all"); err != nil {
		return err
	}
	v2Done := time.Since(v2Ship)

	// v3: a bad build.
	t.Printf("\n== CI registers v3: 2 commits by carol and erin; this build fails a fifth of its requests\n")
	v3Commits := []bot.Commit{
		{SHA: "d41f9e3", Author: "carol@example.com", Subject: "checkout: new payment provider client"},
		{SHA: "e5520ab", Author: "erin@example.com", Subject: "cart: batch price lookups"},
	}
	if err := d.register(ctx, appBin, "v3", behaviourBad, v3Commits); err != nil {
		return err
	}
	if _, mark, err = d.wait(ctx, mark, "v3 is up for check-in"); err != nil {
		return err
	}
	if err := d.play(ctx, []line{{1, "carol", "!ready"}, {1, "erin", "!ready"}, {1, "dave", "!ship"}}); err != nil {
		return err
	}
	if _, mark, err = d.wait(ctx, mark, "shipping v3"); err != nil {
		return err
	}
	v3Ship := time.Now()
	if _, err := d.watchPush(ctx, "v3"); err != nil {
		return err
	}
	rollback, mark, err := d.wait(ctx, mark, "ROLLBACK v3")
	if err != nil {
		return err
	}
	if _, _, err = d.wait(ctx, mark, "v3 rolled back"); err != nil {
		return err
	}
	v3Back := time.Since(v3Ship)
	if err := waitFleet(ctx, f, 60*time.Second, allActive("v2", o.hosts)); err != nil {
		return fmt.Errorf("after the rollback not every host is on v2: %w", err)
	}

	// The summary.
	racks := map[string][]string{}
	for _, h := range f.Hosts() {
		racks[h.Host.Rack] = append(racks[h.Host.Rack], h.Host.Name+"="+h.Active)
	}
	t.Printf("\n== summary\n")
	t.Printf("   set-up (%d agents started, v1 on every host): %s\n", o.hosts, bootstrapped.Sub(start).Round(100*time.Millisecond))
	t.Printf("   v2 (good): !ship to done on all %d hosts in %s; the push took %s\n", o.hosts, v2Done.Round(100*time.Millisecond), v2Push.took.Round(100*time.Millisecond))
	t.Printf("   v2 push: %s moved, %s peer-to-peer (%.0f%%), %s from the origin (seeder %s, webseed %s)\n",
		mib(v2Push.total), mib(v2Push.p2p), 100*float64(v2Push.p2p)/float64(max(1, v2Push.total)), mib(v2Push.origin), mib(v2Push.seeder), mib(v2Push.webseed))
	t.Printf("   v3 (bad): !ship to rolled back in %s: %s\n", v3Back.Round(100*time.Millisecond), rollback[strings.Index(rollback, "ROLLBACK v3: ")+len("ROLLBACK v3: "):])
	names := make([]string, 0, len(racks))
	for r := range racks {
		names = append(names, r)
	}
	sort.Strings(names)
	for _, r := range names {
		sort.Strings(racks[r])
		t.Printf("   %s: %s\n", r, strings.Join(racks[r], " "))
	}
	t.Printf("   total: %s. Every process is stopped and the temp dir removed on exit.\n", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// wait waits for the bot to say sub; a scripted demo gives up after 3 minutes
// rather than hang, an interactive one waits for the user.
func (d *demo) wait(ctx context.Context, mark int, sub string) (string, int, error) {
	if d.say != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, 3*time.Minute, errors.New("no answer in 3 minutes"))
		defer cancel()
	}
	return d.term.WaitLine(ctx, mark, sub)
}

// line is one scripted chat line, typed after a pause of wait seconds.
type line struct {
	wait   float64
	person string
	text   string
}

// play types the lines, or, in the interactive demo, asks the user to.
func (d *demo) play(ctx context.Context, lines []line) error {
	if d.say == nil {
		var want []string
		for _, l := range lines {
			want = append(want, l.person+": "+l.text)
		}
		d.term.Printf("== your turn (%s): %s\n", d.hint, strings.Join(want, ", then "))
		return nil
	}
	for _, l := range lines {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(time.Duration(l.wait * float64(time.Second) / d.o.speed)):
		}
		if err := d.say(l.person, l.text); err != nil {
			return err
		}
	}
	return nil
}

// say0 is a line the demo types itself even when interactive (housekeeping).
func (d *demo) say0(ctx context.Context, person, text string) error {
	if d.say != nil {
		return d.say(person, text)
	}
	d.s.bot.Handle(ctx, bot.Message{Sender: bot.Sender{Network: bot.NetConsole, ID: person, Nick: person}, Channel: "#deploy", Text: text})
	return nil
}

// register builds a release's artifact and registers it through the HTTP API,
// as CI would with shipbot release create.
func (d *demo) register(ctx context.Context, appBin, version, behaviour string, commits []bot.Commit) error {
	path := filepath.Join(d.tmp, "ci", version, "app.tar.gz")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := demoArtifact(path, appBin, version, behaviour, d.o.padMiB); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	prev := map[string]string{"v1": "v0", "v2": "v1", "v3": "v2"}[version]
	meta := httpapi.ReleaseMeta{Version: version, Range: prev + ".." + version, Artifact: "app.tar.gz", CreatedBy: "demo CI", Commits: commits}
	if _, err := d.api.CreateRelease(ctx, meta, f); err != nil {
		return fmt.Errorf("register %s: %w", version, err)
	}
	return nil
}

// pushFigures sums a push over the hosts.
type pushFigures struct {
	took                     time.Duration
	total, p2p, origin       int64
	seeder, webseed, hostP2P int64 // origin seeder's upload; bytes hosts got over HTTP and over BitTorrent
}

// watchPush draws the push's progress bars (per rack and in total) until every
// host has staged release, and returns where the bytes came from.
func (d *demo) watchPush(ctx context.Context, release string) (pushFigures, error) {
	f := d.s.push.fleet
	start := time.Now()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	defer d.term.SetBars(nil)
	lastPrint := time.Time{}
	type sample struct {
		at    time.Time
		bytes int64
	}
	var window []sample // the last second or so, for the aggregate rate
	timeout := time.After(3 * time.Minute)
	for {
		select {
		case <-ctx.Done():
			return pushFigures{}, context.Cause(ctx)
		case <-timeout:
			return pushFigures{}, fmt.Errorf("the push of %s did not finish in 3 minutes", release)
		case <-tick.C:
		}
		type agg struct {
			bytes, total int64
			done, hosts  int
		}
		byRack := map[string]*agg{}
		all := &agg{}
		var fig pushFigures
		for _, h := range f.Hosts() {
			st := h.Staged[release]
			a := byRack[h.Host.Rack]
			if a == nil {
				a = &agg{}
				byRack[h.Host.Rack] = a
			}
			for _, x := range []*agg{a, all} {
				x.hosts++
				x.bytes += st.Bytes
				x.total += max(st.Total, 1)
				if st.Done {
					x.done++
				}
			}
			fig.hostP2P += st.FromPeers
			fig.webseed += st.FromWebseed
		}
		now := time.Now()
		window = append(window, sample{now, all.bytes})
		for len(window) > 2 && now.Sub(window[1].at) >= 2*time.Second {
			window = window[1:]
		}
		var rate float64
		if dt := now.Sub(window[0].at); dt > 0 {
			rate = float64(all.bytes-window[0].bytes) / dt.Seconds()
		}
		racks := make([]string, 0, len(byRack))
		for r := range byRack {
			racks = append(racks, r)
		}
		sort.Strings(racks)
		var bars []string
		for _, r := range racks {
			a := byRack[r]
			bars = append(bars, bar(r, float64(a.bytes)/float64(a.total), 30, fmt.Sprintf("%d/%d hosts", a.done, a.hosts)))
		}
		finished := all.hosts > 0 && all.done == all.hosts
		bars = append(bars, bar("total", float64(all.bytes)/float64(all.total), 30, fmt.Sprintf("%d/%d hosts  %s/s", all.done, all.hosts, mib(int64(rate)))))
		if d.term.tty {
			d.term.SetBars(append([]string{fmt.Sprintf("  push %s (peer-to-peer)", release)}, bars...))
		} else if finished || time.Since(lastPrint) >= 2*time.Second {
			lastPrint = time.Now()
			var parts []string
			for _, r := range racks {
				a := byRack[r]
				parts = append(parts, fmt.Sprintf("%s %.0f%%", r, 100*float64(a.bytes)/float64(a.total)))
			}
			d.term.SetBars([]string{fmt.Sprintf("   push %s: %s, total %.0f%% (%d/%d hosts), %s/s", release, strings.Join(parts, ", "),
				100*float64(all.bytes)/float64(all.total), all.done, all.hosts, mib(int64(rate)))})
		}
		if finished {
			fig.took = time.Since(start)
			fig.seeder = d.s.push.seeder.UploadedBytesOf(release)
			fig.total = fig.hostP2P + fig.webseed
			fig.p2p = max(0, fig.hostP2P-fig.seeder) // the origin seeder is a BitTorrent peer too
			fig.origin = fig.seeder + fig.webseed
			return fig, nil
		}
	}
}

func waitFleet(ctx context.Context, f *fleet.Server, d time.Duration, ok func([]fleet.HostState) bool) error {
	deadline := time.Now().Add(d)
	for {
		hs := f.Hosts()
		if ok(hs) {
			return nil
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, h := range hs {
				fmt.Fprintf(&b, " %s=%s", h.Host.Name, h.Active)
			}
			return fmt.Errorf("gave up after %s; hosts:%s", d, b.String())
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func allActive(release string, n int) func([]fleet.HostState) bool {
	return func(hs []fleet.HostState) bool {
		c := 0
		for _, h := range hs {
			if h.Active == release {
				c++
			}
		}
		return c == n
	}
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func randomToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}
