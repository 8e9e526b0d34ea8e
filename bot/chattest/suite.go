// Package chattest is the conversation suite every chat adapter must pass: the
// check-in round of a release, spoken by real people over the real network. An
// adapter's test supplies a Harness (a running shipbot on that network and a way to
// speak as each person) and calls Run.
package chattest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The cast. Committers of v1..v2 in the repository Repo makes: alice (with carol as a
// co-author) and bob; carol also authors a commit. dave is the release head, erin is
// configured but commits nothing and holds no role, mallory is nobody shipbot knows.
// ghost@example.org authors a commit but maps to no person.
const (
	Alice   = "alice"
	Bob     = "bob"
	Carol   = "carol"
	Dave    = "dave"
	Erin    = "erin"
	Mallory = "mallory"

	UnmappedEmail = "ghost@example.org"
)

// Email is the commit email of a cast member.
func Email(person string) string { return person + "@example.com" }

// Harness is a running shipbot on one chat network.
type Harness interface {
	// Mention is how the bot mentions a configured person on this network.
	Mention(person string) string
	// Say types text in the release channel as person (any cast member, Mallory too).
	Say(t testing.TB, person, text string)
	// BotLines returns every line the bot has said in the channel so far.
	BotLines() []string
	// CreateRelease registers a release for range v1..v2 of the repository made by
	// Repo, through the real API.
	CreateRelease(t testing.TB, version string)
}

// Timeout bounds each expectation. Reminders need ReminderInterval (the harness'
// config should set 1s or 2s) plus delivery.
var Timeout = 15 * time.Second

// Transcript reads a harness' bot lines in order, like a person scrolling the channel.
type Transcript struct {
	h    Harness
	next int
}

// NewTranscript reads h's bot lines from the first.
func NewTranscript(h Harness) *Transcript { return &Transcript{h: h} }

// TranscriptOf starts reading h's bot lines from what has been said so far.
func TranscriptOf(h Harness) *Transcript { return &Transcript{h: h, next: len(h.BotLines())} }

// Expect waits for the next bot line that contains every one of subs, and returns it.
// Lines before it are skipped.
func (tr *Transcript) Expect(t testing.TB, subs ...string) string {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for {
		lines := tr.h.BotLines()
		for i := tr.next; i < len(lines); i++ {
			if containsAll(lines[i], subs) {
				tr.next = i + 1
				return lines[i]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no bot line with %q within %s; the bot said (from line %d):\n%s", subs, Timeout, tr.next, strings.Join(lines[min(tr.next, len(lines)):], "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func containsAll(s string, subs []string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

// Run plays the check-in round and asserts on what the bot says.
func Run(t *testing.T, h Harness) {
	tr := NewTranscript(h)
	m := h.Mention

	h.CreateRelease(t, "v2")
	// The announcement: version, commit count, a mention of everyone to hear from, and
	// the email nobody maps to. The merge commit is clean, so its author does not count.
	tr.Expect(t, "release v2", "5 commits", "3 committers", m(Alice), m(Bob), m(Carol))
	tr.Expect(t, "unmapped", UnmappedEmail)

	h.Say(t, Mallory, "!ready")
	tr.Expect(t, "do not know you")

	h.Say(t, Alice, "!frobnicate")
	tr.Expect(t, "!frobnicate", "!help")

	h.Say(t, Alice, "!help")
	for _, c := range []string{"!help", "!status", "!who", "!ready", "!unready", "!ship", "!lock", "!unlock", "!history"} {
		tr.Expect(t, c)
	}

	h.Say(t, Alice, "!ready")
	tr.Expect(t, m(Alice), "checked in for v2", "1/3")
	h.Say(t, Alice, "!ready")
	tr.Expect(t, m(Alice), "already checked in", "1/3")

	h.Say(t, Erin, "!ready")
	tr.Expect(t, m(Erin), "not a committer of v2")

	h.Say(t, Carol, "!ready")
	tr.Expect(t, m(Carol), "2/3")
	h.Say(t, Carol, "!unready")
	tr.Expect(t, m(Carol), "taken back", "1/3")
	h.Say(t, Carol, "!ready")
	tr.Expect(t, m(Carol), "2/3")

	h.Say(t, Erin, "!ship")
	tr.Expect(t, m(Erin), "release heads", Dave)

	h.Say(t, Dave, "!ship")
	tr.Expect(t, m(Dave), "refused", "1 of 3", m(Bob))

	h.Say(t, Dave, "!who")
	tr.Expect(t, "waiting for 1 of 3", m(Bob))

	// bob is late: the bot reminds him.
	tr.Expect(t, "reminder", "v2", m(Bob))

	h.Say(t, Dave, "!lock payments freeze \x07\x1b[31m until 3pm")
	lock := tr.Expect(t, m(Dave), "locked", "payments freeze")
	if strings.ContainsAny(lock, "\x07\x1b") {
		t.Errorf("control characters echoed back raw: %q", lock)
	}
	h.Say(t, Bob, "!ready")
	tr.Expect(t, m(Bob), "Everyone is in", "3/3")
	h.Say(t, Dave, "!ship")
	tr.Expect(t, m(Dave), "refused", "locked by dave", "payments freeze")
	h.Say(t, Bob, "!unlock")
	tr.Expect(t, m(Bob), "release heads")
	h.Say(t, Dave, "!unlock")
	tr.Expect(t, m(Dave), "unlocked")

	long := "!ready " + strings.Repeat("x", 420) // over 400 bytes, yet within one IRC line
	h.Say(t, Alice, long)
	if l := tr.Expect(t, m(Alice), "at most 400"); strings.Contains(l, "xxxxxxxxxx") {
		t.Errorf("long message echoed back: %q", l)
	}

	h.Say(t, Dave, "!status")
	tr.Expect(t, "v2", "checkin", "5 commits")
	tr.Expect(t, "checked in 3/3")

	h.Say(t, Dave, "!ship")
	tr.Expect(t, m(Dave), "shipping v2", "3/3")
	h.Say(t, Dave, "!ship")
	tr.Expect(t, m(Dave), "no release is waiting to ship")

	h.Say(t, Erin, "!history")
	tr.Expect(t, "v2 shipping", "shipped by dave")

	for _, l := range h.BotLines() {
		for _, r := range l {
			if r < 0x20 || r == 0x7f {
				t.Errorf("bot line carries a control character %q: %q", r, l)
				break
			}
		}
	}
}

// Repo creates a git repository with tags v1 and v2. The range v1..v2 holds five
// commits: alice's (Co-authored-by carol), bob's on a branch, carol's, one by an
// unmapped email, and a clean merge made by erin, which does not make erin a
// committer. It returns the repository's path.
func Repo(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	git := func(env []string, args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_SYSTEM=/dev/null")
		cmd.Env = append(cmd.Env, env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	as := func(name, email string) []string {
		return []string{"GIT_AUTHOR_NAME=" + name, "GIT_AUTHOR_EMAIL=" + email,
			"GIT_COMMITTER_NAME=" + name, "GIT_COMMITTER_EMAIL=" + email}
	}
	commit := func(who, email, file, msg string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, file), []byte(msg+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		git(nil, "add", file)
		git(as(who, email), "commit", "-q", "-m", msg)
	}
	git(nil, "init", "-q", "-b", "main")
	commit("Zed", "zed@example.com", "README", "initial")
	git(nil, "tag", "v1")
	commit("Alice", Email(Alice), "a.txt", "checkout: retry declines\n\nCo-authored-by: Carol <"+Email(Carol)+">")
	git(nil, "checkout", "-q", "-b", "search")
	commit("Bob", Email(Bob), "b.txt", "search: warm cache")
	git(nil, "checkout", "-q", "main")
	commit("Carol", Email(Carol), "c.txt", "payments: idempotency keys")
	commit("Ghost", UnmappedEmail, "g.txt", "docs: typo")
	git(as("Erin", Email(Erin)), "merge", "-q", "--no-ff", "-m", "Merge branch search", "search")
	git(nil, "tag", "v2")
	return dir
}
