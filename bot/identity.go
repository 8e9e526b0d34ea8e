package bot

import (
	"strings"
)

// Networks a Sender can come from.
const (
	NetConsole = "console"
	NetIRC     = "irc"
	NetSlack   = "slack"
)

// Sender is the stable identity of whoever typed a message, as the adapter saw it.
// A display name or a bare nick is never an identity.
type Sender struct {
	Network string
	// ID is the stable identity: the console name, the Slack user ID, or the IRCv3
	// account name (empty when the IRC server gives none or the user is not logged in).
	ID string
	// Nick is for display only; it never grants anything.
	Nick string
	// Mask is nick!user@host on IRC.
	Mask string
}

// String renders the sender for the audit log.
func (s Sender) String() string {
	switch {
	case s.Network == NetIRC && s.ID != "":
		return "irc:account:" + s.ID + " (" + s.Mask + ")"
	case s.Network == NetIRC:
		return "irc:" + s.Mask
	default:
		return s.Network + ":" + s.ID
	}
}

// Identify maps a sender to a configured person. This is the identity rule:
//
//   - console: the name typed before the colon.
//   - slack: the user ID.
//   - irc: the IRCv3 account when the server gives one (account-tag or account
//     tracking); the configured masks are then ignored. Without an account, the full
//     nick!user@host must match one of the person's masks. A nick alone never matches.
func (d *Directory) Identify(s Sender) (*Person, bool) {
	for _, p := range d.people {
		if matches(p, s) {
			return p, true
		}
	}
	return nil, false
}

func matches(p *Person, s Sender) bool {
	switch s.Network {
	case NetConsole:
		return s.ID != "" && s.ID == p.Name
	case NetSlack:
		return s.ID != "" && s.ID == p.Slack
	case NetIRC:
		if s.ID != "" {
			return p.IRC.Account != "" && ircEqual(s.ID, p.IRC.Account)
		}
		if s.Mask == "" || !strings.Contains(s.Mask, "!") || !strings.Contains(s.Mask, "@") {
			return false
		}
		for _, m := range p.IRC.Masks {
			if MatchMask(m, s.Mask) {
				return true
			}
		}
	}
	return false
}

// MatchMask reports whether an IRC hostmask glob (with * and ?) matches a full
// nick!user@host, using IRC's rfc1459 case folding.
func MatchMask(pattern, mask string) bool {
	return glob(ircFold(pattern), ircFold(mask))
}

func ircEqual(a, b string) bool { return ircFold(a) == ircFold(b) }

// ircFold lower-cases with rfc1459 rules, where []\~ are the upper case of {}|^.
func ircFold(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		case r == '[':
			return '{'
		case r == ']':
			return '}'
		case r == '\\':
			return '|'
		case r == '~':
			return '^'
		}
		return r
	}, s)
}

// glob matches * (any run) and ? (one byte) iteratively, without backtracking blowup.
func glob(p, s string) bool {
	px, sx := 0, 0
	nextPx, nextSx := -1, -1
	for px < len(p) || sx < len(s) {
		if px < len(p) {
			switch c := p[px]; c {
			case '*':
				nextPx, nextSx = px, sx+1
				px++
				continue
			case '?':
				if sx < len(s) {
					px++
					sx++
					continue
				}
			default:
				if sx < len(s) && s[sx] == c {
					px++
					sx++
					continue
				}
			}
		}
		if nextSx > 0 && nextSx <= len(s) {
			px, sx = nextPx, nextSx
			continue
		}
		return false
	}
	return true
}
