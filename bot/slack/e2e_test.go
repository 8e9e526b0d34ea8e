package slack_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/bot/chattest"
)

func slackID(person string) string { return "U" + strings.ToUpper(person) }

// slackHarness drives a real `shipbot serve` whose channel is on the fake Slack.
type slackHarness struct {
	f    *fakeSlack
	sb   *chattest.Shipbot
	repo string
	art  string
}

func (h *slackHarness) Mention(p string) string { return "<@" + slackID(p) + ">" }

func (h *slackHarness) Say(t testing.TB, person, text string) {
	h.f.message(channel, slackID(person), text)
}

// BotLines are the bot's messages as first posted; edits in place (the check-in
// card) do not add lines.
func (h *slackHarness) BotLines() []string {
	var out []string
	for _, m := range h.f.messages() {
		out = append(out, strings.Split(m.Text, "\n")...)
	}
	return out
}

func (h *slackHarness) CreateRelease(t testing.TB, version string) {
	t.Helper()
	out, err := h.sb.CLI(context.Background(), "release", "create", "--version", version,
		"--artifact", h.art, "--commits", "v1..v2", "--repo", h.repo)
	if err != nil || !strings.Contains(out, "registered "+version) {
		t.Fatalf("shipbot release create: %v\n%s", err, out)
	}
}

func startSlackShipbot(t *testing.T) *slackHarness {
	f := newFakeSlack(t)
	data := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir: %s\nchannel: \"#deploy\"\nchat: slack\nreminder_interval: 2s\nlog: {format: json, level: debug}\n", data)
	fmt.Fprintf(&b, "slack: {channel_id: %s, api_url: %q, reconnect_max: 1s}\npeople:\n", channel, f.URL())
	for _, p := range []string{chattest.Alice, chattest.Bob, chattest.Carol, chattest.Dave, chattest.Erin} {
		fmt.Fprintf(&b, "  - name: %s\n    emails: [%s]\n    slack: %s\n", p, chattest.Email(p), slackID(p))
	}
	b.WriteString("roles:\n  release_heads: [dave]\n")
	art := filepath.Join(t.TempDir(), "app.tar.gz")
	os.WriteFile(art, []byte("an artifact"), 0o644)
	bin := chattest.Build(t, "./cmd/shipbot")
	sb := chattest.StartShipbot(t, bin, b.String(), data, "SHIPBOT_SLACK_BOT_TOKEN=xoxb-test", "SHIPBOT_SLACK_APP_TOKEN=xapp-test")
	deadline := time.Now().Add(20 * time.Second)
	for f.Connects() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("shipbot never opened a Socket Mode connection:\n%s", sb.Stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("shipbot log:\n%s", sb.Stderr())
		}
	})
	return &slackHarness{f: f, sb: sb, repo: chattest.Repo(t), art: art}
}

// TestConversationSuiteOnSlack runs the shared check-in conversation with the real
// shipbot binary on (fake) Slack.
func TestConversationSuiteOnSlack(t *testing.T) {
	chattest.Run(t, startSlackShipbot(t))
}

// TestCheckinCardOnSlack: the announcement is a Block Kit card with a Ready
// button; a committer's click checks them in and the card is edited in place; a
// click from someone who is not a committer is refused by name.
func TestCheckinCardOnSlack(t *testing.T) {
	h := startSlackShipbot(t)
	tr := chattest.NewTranscript(h)
	h.CreateRelease(t, "v2")
	tr.Expect(t, "release v2", "3 committers")
	card := h.f.messages()[0]
	for _, want := range []string{`"action_id":"shipbot_ready"`, `"value":"v2"`, "<@UALICE>", ":hourglass_flowing_sand:", "0/3 checked in"} {
		if !strings.Contains(card.Blocks, want) {
			t.Errorf("the announcement's blocks lack %s: %s", want, card.Blocks)
		}
	}

	h.f.click(channel, slackID(chattest.Alice), "shipbot_ready", "v2")
	tr.Expect(t, "<@UALICE>", "checked in for v2", "1/3")
	h.f.click(channel, slackID(chattest.Erin), "shipbot_ready", "v2")
	tr.Expect(t, "<@UERIN>", "not a committer of v2")
	h.f.slash(channel, slackID(chattest.Bob), "/ship", "ready")
	tr.Expect(t, "<@UBOB>", "checked in for v2", "2/3")

	deadline := time.Now().Add(10 * time.Second)
	for {
		card = h.f.messages()[0]
		if card.Updates >= 2 && strings.Contains(card.Blocks, "2/3 checked in") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the card was not edited in place: %d updates, blocks %s", card.Updates, card.Blocks)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(card.Blocks, ":white_check_mark: <@UALICE>") {
		t.Errorf("alice is not ticked on the card: %s", card.Blocks)
	}
}
