package bot_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/shipbot/shipbot/bot"
)

func TestParseCommand(t *testing.T) {
	cases := []struct {
		in      string
		want    bot.Command
		wantErr string
	}{
		{in: "!ready", want: bot.Command{Name: "ready"}},
		{in: "  !READY  ", want: bot.Command{Name: "ready"}},
		{in: "!ready v42", want: bot.Command{Name: "ready", Version: "v42"}},
		{in: "!ready v42 v43", wantErr: "at most one argument"},
		{in: "!ready ../etc", wantErr: "not a release version"},
		{in: "!help me", wantErr: "takes no arguments"},
		{in: "!ship", want: bot.Command{Name: "ship"}},
		{in: "!ship v42", want: bot.Command{Name: "ship", Version: "v42"}},
		{in: "!ship --force hotfix for outage", want: bot.Command{Name: "ship", Force: true, Reason: "hotfix for outage"}},
		{in: "!ship v42 --force  hotfix ", want: bot.Command{Name: "ship", Version: "v42", Force: true, Reason: "hotfix"}},
		{in: "!ship --force", wantErr: "needs a reason"},
		{in: "!ship --yolo", wantErr: "unknown option"},
		{in: "!ship v1 v2", wantErr: "unexpected"},
		{in: "!lock db migration", want: bot.Command{Name: "lock", Reason: "db migration"}},
		{in: "!lock", wantErr: "needs a reason"},
		{in: "!rollback", want: bot.Command{Name: "rollback"}},
		{in: "!rollback error rate", want: bot.Command{Name: "rollback", Reason: "error rate"}},
		{in: "!frob x y", want: bot.Command{Name: "frob"}},
		{in: "hello", wantErr: "not a command"},
		{in: "!", wantErr: "not a command"},
		{in: "! ready", wantErr: "not a command"},
		{in: "!!!", wantErr: "not a command"},
	}
	for _, c := range cases {
		got, err := bot.ParseCommand(c.in)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("ParseCommand(%q) error = %v, want %q", c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseCommand(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	if _, err := bot.ParseCommand("just chatting"); !errors.Is(err, bot.ErrNotCommand) {
		t.Errorf("plain chat: %v", err)
	}
}

func TestReasonIsCleanedAndBounded(t *testing.T) {
	c, err := bot.ParseCommand("!lock bad\r\nPRIVMSG #x :owned\x07 " + strings.Repeat("é", 300))
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(c.Reason, "\r\n\x07") || len(c.Reason) > bot.MaxReasonBytes {
		t.Errorf("reason %q (%d bytes)", c.Reason, len(c.Reason))
	}
	if !strings.HasPrefix(c.Reason, "bad PRIVMSG #x :owned é") || !strings.HasSuffix(c.Reason, "…") {
		t.Errorf("reason %q", c.Reason)
	}
}

func TestClean(t *testing.T) {
	cases := map[string]string{
		"plain":                   "plain",
		"a\r\nb":                  "a b",
		"a\x00b\x1b[31mc":         "a b [31mc",
		"  lead  and   trail  ":   "lead and trail",
		"bad\xffutf8":             "bad utf8",
		"zero\u200bwidth":         "zero width",
		"line\u2028sep":           "line sep",
		"\x02bold\x02 \x03colour": "bold colour",
	}
	for in, want := range cases {
		if got := bot.Clean(in, 100); got != want {
			t.Errorf("Clean(%q) = %q, want %q", in, got, want)
		}
	}
	// Truncation respects rune boundaries.
	s := strings.Repeat("日本", 50)
	got := bot.Clean(s, 20)
	if len(got) > 20 || !strings.HasSuffix(got, "…") || strings.ContainsRune(got, '\uFFFD') {
		t.Errorf("Clean truncated to %q (%d bytes)", got, len(got))
	}
}

func TestValidVersion(t *testing.T) {
	for v, ok := range map[string]bool{
		"v42": true, "2026.11.26-1": true, "v1.2.3+build.7": true, "release_9": true,
		"": false, "-v1": false, "../x": false, "v 1": false, "v1/2": false, strings.Repeat("a", 65): false,
	} {
		if bot.ValidVersion(v) != ok {
			t.Errorf("ValidVersion(%q) = %v", v, !ok)
		}
	}
}
