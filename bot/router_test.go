package bot_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/shipbot/shipbot/bot"
	"github.com/shipbot/shipbot/store"
)

// recorder is a Chat that keeps what the bot says.
type recorder struct {
	mu    sync.Mutex
	posts []bot.Post
}

func (r *recorder) Send(_ context.Context, p bot.Post) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.posts = append(r.posts, p)
	return nil
}

func (r *recorder) Mention(p *bot.Person) string { return "@" + p.Name }

// last is the last line said (not a card refreshed in place).
func (r *recorder) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.posts) - 1; i >= 0; i-- {
		if !r.posts[i].UpdateOnly {
			return r.posts[i].Text
		}
	}
	return ""
}

// lastCard is the newest check-in card posted or refreshed.
func (r *recorder) lastCard() (bot.Post, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.posts) - 1; i >= 0; i-- {
		if r.posts[i].Card != nil {
			return r.posts[i], true
		}
	}
	return bot.Post{}, false
}

func (r *recorder) all() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, p := range r.posts {
		b.WriteString(p.Text + "\n")
	}
	return b.String()
}

type fixture struct {
	t     *testing.T
	db    *store.DB
	chat  *recorder
	clock *clockwork.FakeClock
	bot   *bot.Bot
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "shipbot.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &fixture{t: t, db: db, chat: &recorder{}, clock: clockwork.NewFakeClockAt(time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC))}
	f.bot = bot.New(mustDirectory(t), db, f.chat, f.clock, nil)
	return f
}

func (f *fixture) say(who, text string) string {
	f.t.Helper()
	f.bot.Handle(context.Background(), bot.Message{Sender: bot.Sender{Network: bot.NetConsole, ID: who, Nick: who}, Text: text})
	return f.chat.last()
}

func (f *fixture) create(version string, authors ...string) *bot.Release {
	f.t.Helper()
	var commits []bot.Commit
	for i, a := range authors {
		commits = append(commits, bot.Commit{SHA: string(rune('a' + i)), Author: a})
	}
	r, err := f.bot.CreateRelease(context.Background(), bot.NewRelease{Version: version, Range: "v0.." + version, Commits: commits,
		Artifact: bot.Artifact{Name: "app.tar.gz", Size: 10, SHA256: "00"}})
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

func (f *fixture) release(v string) *bot.Release {
	f.t.Helper()
	var r *bot.Release
	err := f.db.View(context.Background(), func(tx bot.Tx) error {
		var err error
		r, err = tx.Release(v)
		return err
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

func (f *fixture) events() []bot.Event {
	f.t.Helper()
	evs, err := f.db.Events(0, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	return evs
}

func expect(t *testing.T, got string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(got, s) {
			t.Errorf("reply %q lacks %q", got, s)
		}
	}
}

func TestUnknownSenderTouchesNothing(t *testing.T) {
	f := newFixture(t)
	f.create("v1", "alice@example.com")
	before := len(f.events())
	expect(t, f.say("mallory", "!ship --force now"), "do not know you")
	expect(t, f.say("mallory", "!ready"), "do not know you")
	if n := len(f.events()); n != before {
		t.Errorf("a stranger's commands wrote %d audit events", n-before)
	}
	if r := f.release("v1"); r.State != bot.StateCheckin {
		t.Errorf("state %s", r.State)
	}
}

func TestPlainChatIsIgnored(t *testing.T) {
	f := newFixture(t)
	f.say("alice", "lunch?")
	f.say("alice", "the ! is a typo")
	if len(f.chat.posts) != 0 || len(f.events()) != 0 {
		t.Errorf("plain chat produced %d posts and %d events", len(f.chat.posts), len(f.events()))
	}
}

func TestSecondReadyChangesNothing(t *testing.T) {
	f := newFixture(t)
	f.create("v1", "alice@example.com", "bob@example.com")
	expect(t, f.say("alice", "!ready"), "checked in for v1", "1/2")
	first := f.release("v1").Committer("alice").ReadyAt
	f.clock.Advance(time.Minute)
	expect(t, f.say("alice", "!ready"), "already checked in")
	if got := f.release("v1").Committer("alice").ReadyAt; !got.Equal(first) {
		t.Errorf("second !ready moved the check-in time from %v to %v", first, got)
	}
}

// TestCheckinCard: the announcement carries the check-in card, and each change of
// a check-in refreshes it in place (networks that cannot edit drop the refresh).
func TestCheckinCard(t *testing.T) {
	f := newFixture(t)
	f.create("v1", "alice@example.com", "bob@example.com")
	p, ok := f.chat.lastCard()
	if !ok || p.UpdateOnly || p.Key != "checkin:v1" || len(p.Card.Committers) != 2 || p.Card.Committers[0].Ready || !p.Card.Open {
		t.Fatalf("announcement card: %+v %+v", p, p.Card)
	}
	f.say("alice", "!ready")
	p, _ = f.chat.lastCard()
	if !p.UpdateOnly || p.Key != "checkin:v1" || !p.Card.Committers[0].Ready || p.Card.Committers[0].Mention != "@alice" || p.Card.Committers[1].Ready {
		t.Fatalf("card after alice's !ready: %+v %+v", p, p.Card)
	}
	n := len(f.chat.posts)
	f.say("alice", "!ready") // nothing changes: no refresh
	if p2, _ := f.chat.lastCard(); len(f.chat.posts) != n+1 || p2.Card != p.Card {
		t.Errorf("a second !ready refreshed the card")
	}
	f.say("alice", "!unready")
	if p, _ = f.chat.lastCard(); p.Card.Committers[0].Ready {
		t.Errorf("card after !unready: %+v", p.Card)
	}
}

func TestShipRules(t *testing.T) {
	f := newFixture(t)
	expect(t, f.say("dave", "!ship"), "no release is waiting to ship")
	f.create("v1", "alice@example.com", "bob@example.com")
	var shipped []string
	f.bot.OnShip = func(_ context.Context, r *bot.Release) { shipped = append(shipped, r.Version) }

	expect(t, f.say("alice", "!ship"), "for release heads", "dave, erin")
	expect(t, f.say("dave", "!ship"), "refused", "2 of 2", "@alice @bob")
	expect(t, f.say("dave", "!ship --force"), "needs a reason")
	expect(t, f.say("dave", "!lock freeze"), "locked")
	expect(t, f.say("dave", "!ship --force urgent fix"), "locked by dave", "freeze")
	expect(t, f.say("dave", "!lock again"), "already locked")
	expect(t, f.say("alice", "!unlock"), "for release heads")
	expect(t, f.say("erin", "!unlock"), "unlocked")
	expect(t, f.say("dave", "!unlock"), "not locked")
	if len(shipped) != 0 {
		t.Fatalf("OnShip ran for a refused ship: %v", shipped)
	}
	expect(t, f.say("dave", "!ship --force CVE fix cannot wait"), "shipping v1 with --force", "not checked in: alice, bob")
	r := f.release("v1")
	if r.State != bot.StateShipping || r.Head != "dave" || r.ForceReason != "CVE fix cannot wait" || !r.ShippedAt.Equal(f.clock.Now()) {
		t.Errorf("shipped release: %+v", r)
	}
	if len(shipped) != 1 || shipped[0] != "v1" {
		t.Errorf("OnShip calls: %v", shipped)
	}
	expect(t, f.say("alice", "!ready"), "no release is waiting")
	expect(t, f.say("alice", "!ready v1"), "v1 is shipping; check-ins are closed")
	expect(t, f.say("alice", "!history"), "v1 shipping", "shipped by dave")
}

func TestShipOldestFirstAndByVersion(t *testing.T) {
	f := newFixture(t)
	f.create("v1", "alice@example.com")
	f.create("v2", "bob@example.com")
	expect(t, f.say("bob", "!ready"), "checked in for v2")
	expect(t, f.say("dave", "!ship"), "refused", "@alice") // v1 is first in line
	expect(t, f.say("dave", "!ship v2"), "shipping v2")
	expect(t, f.say("dave", "!ship v9"), "there is no release v9")
	expect(t, f.say("erin", "!cancel v1"), "v1 cancelled")
	if r := f.release("v1"); r.State != bot.StateCancelled || r.FinishedAt.IsZero() {
		t.Errorf("cancelled release: %+v", r)
	}
}

func TestReminders(t *testing.T) {
	f := newFixture(t)
	f.bot.ReminderInterval = 10 * time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.bot.Run(ctx) }()
	defer func() { cancel(); <-done }()

	f.create("v1", "alice@example.com", "bob@example.com")
	f.say("alice", "!ready")
	announced := len(f.chat.posts)
	step := func(d time.Duration) {
		// Wait for the reminder loop to wait on its ticker, then move time.
		if err := f.clock.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(d)
	}
	waitPosts := func(n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			f.chat.mu.Lock()
			got := len(f.chat.posts)
			f.chat.mu.Unlock()
			if got >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("have %d posts, want %d:\n%s", got, n, f.chat.all())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for i := 0; i < 3; i++ { // 7m30s: not yet
		step(150 * time.Second)
	}
	if err := f.clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if len(f.chat.posts) != announced {
		t.Fatalf("reminded too early:\n%s", f.chat.all())
	}
	step(150 * time.Second) // 10m
	waitPosts(announced + 1)
	expect(t, f.chat.last(), "reminder", "v1", "@bob", "1/2")
	if strings.Contains(f.chat.last(), "@alice") {
		t.Errorf("reminded alice, who checked in: %q", f.chat.last())
	}
	for i := 0; i < 4; i++ { // 10 more minutes: the second reminder
		step(150 * time.Second)
	}
	waitPosts(announced + 2)
	f.say("bob", "!ready")
	n := len(f.chat.posts)
	for i := 0; i < 8; i++ {
		step(150 * time.Second)
	}
	if err := f.clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if len(f.chat.posts) != n {
		t.Errorf("reminded after everyone checked in:\n%s", f.chat.all())
	}
	reminders := 0
	for _, e := range f.events() {
		if e.Kind == "reminder" {
			reminders++
		}
	}
	if reminders != 2 {
		t.Errorf("%d reminder events in the audit log, want 2", reminders)
	}
}

// failingStore fails every PutRelease, as a full disk would.
type failingStore struct{ bot.Store }

func (s failingStore) Update(ctx context.Context, fn func(bot.Tx) error) error {
	return s.Store.Update(ctx, func(tx bot.Tx) error { return fn(failingTx{tx}) })
}

type failingTx struct{ bot.Tx }

func (failingTx) PutRelease(*bot.Release) error { return errors.New("write: no space left on device") }

func TestStoreFailureChangesNothing(t *testing.T) {
	f := newFixture(t)
	f.create("v1", "alice@example.com")
	before := len(f.events())
	f.bot.Store = failingStore{f.db}
	expect(t, f.say("alice", "!ready"), "failed on my side", "nothing changed")
	f.bot.Store = f.db
	if r := f.release("v1"); r.ReadyCount() != 0 {
		t.Error("a failed command left a check-in behind")
	}
	if len(f.events()) != before {
		t.Error("a failed command left an audit event behind")
	}
}

func TestCreateReleaseDuplicate(t *testing.T) {
	f := newFixture(t)
	f.create("v1", "alice@example.com")
	_, err := f.bot.CreateRelease(context.Background(), bot.NewRelease{Version: "v1", Range: "a..b", Commits: []bot.Commit{{SHA: "x", Author: "a@b"}}})
	if !errors.Is(err, bot.ErrExists) {
		t.Errorf("duplicate create: %v", err)
	}
}

func TestCommittersOf(t *testing.T) {
	d := mustDirectory(t)
	people, unmapped := bot.CommittersOf([]bot.Commit{
		{SHA: "1", Author: "BOB@example.com", CoAuthors: []string{"alice@home.example", "ghost@x.org"}},
		{SHA: "2", Author: "dave@example.com", Merge: true},                                        // clean merge: not a committer
		{SHA: "3", Author: "erin@example.com", Merge: true, Resolved: true},                        // resolved conflicts: counts
		{SHA: "4", Author: "ghost@x.org"},                                                          // counted once
		{SHA: "5", Author: "bot@ci.example", Merge: true, CoAuthors: []string{"dave@example.com"}}, // clean merge, trailers too
	}, d)
	if strings.Join(people, ",") != "alice,bob,erin" {
		t.Errorf("people = %v", people)
	}
	if strings.Join(unmapped, ",") != "ghost@x.org" {
		t.Errorf("unmapped = %v", unmapped)
	}
}

func TestHistoryAndStatus(t *testing.T) {
	f := newFixture(t)
	expect(t, f.say("alice", "!history"), "no releases yet")
	expect(t, f.say("alice", "!status"), "no release is open")
	for _, v := range []string{"v1", "v2", "v3", "v4", "v5", "v6"} {
		f.create(v, "alice@example.com")
	}
	h := f.say("alice", "!history")
	expect(t, h, "last 5 releases", "v6 checkin", "v2 checkin")
	if strings.Contains(h, "v1 ") {
		t.Errorf("history shows more than 5: %q", h)
	}
	expect(t, f.say("alice", "!status v3"), "v3: checkin", "checked in 0/1", "missing: alice")
	expect(t, f.say("alice", "!who v3"), "waiting for 1 of 1: @alice")
}

type fakeRollouts struct {
	running string
	calls   []string
}

func (f *fakeRollouts) Running() (string, bool) { return f.running, f.running != "" }
func (f *fakeRollouts) Status(context.Context) []string {
	if f.running == "" {
		return nil
	}
	return []string{"rollout of " + f.running + ": baking tier a2"}
}
func (f *fakeRollouts) Pause(_ context.Context, by string) (string, error) {
	f.calls = append(f.calls, "pause "+by)
	return "paused", nil
}
func (f *fakeRollouts) Resume(_ context.Context, by string) (string, error) {
	f.calls = append(f.calls, "resume "+by)
	return "resumed", nil
}
func (f *fakeRollouts) Promote(_ context.Context, by string) (string, error) {
	f.calls = append(f.calls, "promote "+by)
	return "promoted", nil
}
func (f *fakeRollouts) Rollback(_ context.Context, by, reason string) (string, error) {
	f.calls = append(f.calls, "rollback "+by+" "+reason)
	return "rolling back", nil
}

func TestRolloutCommands(t *testing.T) {
	f := newFixture(t)
	rc := &fakeRollouts{}
	f.bot.EnableRollouts(rc)
	expect(t, f.say("dave", "!pause"), "no rollout is running")
	f.create("v1", "alice@example.com")
	rc.running = "v1"
	expect(t, f.say("alice", "!pause"), "for release heads")
	f.say("dave", "!pause")
	expect(t, f.chat.last(), "paused")
	f.say("alice", "!rollback error rate doubled") // a committer of v1
	expect(t, f.chat.last(), "rolling back")
	expect(t, f.say("bob", "!rollback"), "release heads and the committers of v1")
	f.say("erin", "!abort db on fire") // an admin
	want := "pause dave|rollback alice rolled back by alice: error rate doubled|rollback erin aborted by erin: db on fire"
	if got := strings.Join(rc.calls, "|"); got != want {
		t.Errorf("calls %q, want %q", got, want)
	}
	expect(t, f.say("dave", "!help"), "!pause", "!rollback [reason]")
	f.say("dave", "!status")
	expect(t, f.chat.last(), "rollout of v1: baking tier a2")
}
