package bot_test

import (
	"testing"

	"github.com/shipbot/shipbot/bot"
)

func mustDirectory(t testing.TB) *bot.Directory {
	t.Helper()
	d, err := bot.NewDirectory([]bot.Person{
		{Name: "alice", Emails: []string{"alice@example.com", "Alice@Home.example"}, Slack: "UALICE",
			IRC: bot.IRCIdentity{Account: "alice", Masks: []string{"alice!~alice@dev.example.com"}}},
		{Name: "bob", Emails: []string{"bob@example.com"}, Slack: "UBOB",
			IRC: bot.IRCIdentity{Masks: []string{"bob!*@*.corp.example.com", "bobby!bob@10.0.0.?"}}},
		{Name: "dave", Emails: []string{"dave@example.com"}, IRC: bot.IRCIdentity{Account: "Dave[m]"}},
		{Name: "erin", Emails: []string{"erin@example.com"}},
	}, []string{"dave"}, []string{"erin"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestIdentify(t *testing.T) {
	d := mustDirectory(t)
	cases := []struct {
		name string
		s    bot.Sender
		want string // "" means nobody
	}{
		{"console name", bot.Sender{Network: bot.NetConsole, ID: "alice"}, "alice"},
		{"console unknown", bot.Sender{Network: bot.NetConsole, ID: "mallory"}, ""},
		{"slack id", bot.Sender{Network: bot.NetSlack, ID: "UBOB", Nick: "alice"}, "bob"},
		{"slack display name is not identity", bot.Sender{Network: bot.NetSlack, ID: "UMALLORY", Nick: "alice"}, ""},
		{"irc account", bot.Sender{Network: bot.NetIRC, ID: "alice", Nick: "whatever", Mask: "whatever!x@y"}, "alice"},
		{"irc account rfc1459 fold", bot.Sender{Network: bot.NetIRC, ID: "dave{M}", Mask: "d!d@h"}, "dave"},
		{"irc account beats mask", bot.Sender{Network: bot.NetIRC, ID: "mallory", Mask: "alice!~alice@dev.example.com"}, ""},
		{"irc mask", bot.Sender{Network: bot.NetIRC, Nick: "alice", Mask: "alice!~alice@dev.example.com"}, "alice"},
		{"irc mask case", bot.Sender{Network: bot.NetIRC, Nick: "Alice", Mask: "Alice!~alice@DEV.example.com"}, "alice"},
		{"irc nick alone", bot.Sender{Network: bot.NetIRC, Nick: "alice", Mask: "alice!~alice@evil.example.net"}, ""},
		{"irc nick without mask", bot.Sender{Network: bot.NetIRC, Nick: "alice"}, ""},
		{"irc wildcard host", bot.Sender{Network: bot.NetIRC, Mask: "bob!b@laptop.corp.example.com"}, "bob"},
		{"irc wildcard host suffix only", bot.Sender{Network: bot.NetIRC, Mask: "bob!b@corp.example.com.evil.net"}, ""},
		{"irc question mark", bot.Sender{Network: bot.NetIRC, Mask: "bobby!bob@10.0.0.7"}, "bob"},
		{"irc question mark is one char", bot.Sender{Network: bot.NetIRC, Mask: "bobby!bob@10.0.0.77"}, ""},
		{"other network", bot.Sender{Network: "matrix", ID: "alice"}, ""},
	}
	for _, c := range cases {
		p, ok := d.Identify(c.s)
		got := ""
		if ok {
			got = p.Name
		}
		if got != c.want {
			t.Errorf("%s: Identify(%+v) = %q, want %q", c.name, c.s, got, c.want)
		}
	}
}

func TestMatchMask(t *testing.T) {
	cases := []struct {
		pat, mask string
		want      bool
	}{
		{"*", "a!b@c", true},
		{"a!b@c", "a!b@c", true},
		{"a!b@c", "a!b@cd", false},
		{"*!*@host", "nick!user@host", true},
		{"*!*@host", "nick!user@otherhost", false},
		{"n?ck!*@*", "nick!u@h", true},
		{"n?ck!*@*", "nck!u@h", false},
		{"[x]!*@h", "{X}!u@h", true},
		{"a*b*c*d", "aXXbYYcZZd", true},
		{"a*b*c*d", "aXXbYYcZZ", false},
		{"*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
	}
	for _, c := range cases {
		if got := bot.MatchMask(c.pat, c.mask); got != c.want {
			t.Errorf("MatchMask(%q, %q) = %v", c.pat, c.mask, got)
		}
	}
}

func TestRoles(t *testing.T) {
	d := mustDirectory(t)
	for _, c := range []struct {
		who  string
		role bot.Role
		want bool
	}{
		{"dave", bot.RoleHead, true},
		{"erin", bot.RoleHead, true}, // admins hold every role
		{"erin", bot.RoleAdmin, true},
		{"dave", bot.RoleAdmin, false},
		{"alice", bot.RoleHead, false},
		{"nobody", bot.RoleHead, false},
	} {
		if got := d.Can(c.who, c.role); got != c.want {
			t.Errorf("Can(%s, %s) = %v", c.who, c.role, got)
		}
	}
	if got := d.WithRole(bot.RoleHead); len(got) != 2 || got[0] != "dave" || got[1] != "erin" {
		t.Errorf("WithRole(head) = %v", got)
	}
	if p := d.ByEmail("ALICE@home.EXAMPLE"); p == nil || p.Name != "alice" {
		t.Errorf("ByEmail is not case-insensitive: %v", p)
	}
}

func TestNewDirectoryRejects(t *testing.T) {
	cases := []struct {
		name   string
		people []bot.Person
		heads  []string
	}{
		{"duplicate name", []bot.Person{{Name: "a"}, {Name: "a"}}, nil},
		{"duplicate email", []bot.Person{{Name: "a", Emails: []string{"x@y"}}, {Name: "b", Emails: []string{"X@y"}}}, nil},
		{"duplicate slack", []bot.Person{{Name: "a", Slack: "U1"}, {Name: "b", Slack: "U1"}}, nil},
		{"duplicate account", []bot.Person{{Name: "a", IRC: bot.IRCIdentity{Account: "x"}}, {Name: "b", IRC: bot.IRCIdentity{Account: "X"}}}, nil},
		{"unknown head", []bot.Person{{Name: "a"}}, []string{"zed"}},
	}
	for _, c := range cases {
		if _, err := bot.NewDirectory(c.people, c.heads, nil); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
}

func TestMentionNick(t *testing.T) {
	for _, c := range []struct {
		p    bot.Person
		want string
	}{
		{bot.Person{Name: "a", IRC: bot.IRCIdentity{Nick: "ally"}}, "ally"},
		{bot.Person{Name: "a", IRC: bot.IRCIdentity{Masks: []string{"*!a@h", "al!a@h"}}}, "al"},
		{bot.Person{Name: "a", IRC: bot.IRCIdentity{Account: "acct"}}, "acct"},
		{bot.Person{Name: "a"}, "a"},
	} {
		if got := c.p.MentionNick(); got != c.want {
			t.Errorf("MentionNick(%+v) = %q, want %q", c.p, got, c.want)
		}
	}
}
