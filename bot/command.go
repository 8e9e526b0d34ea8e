package bot

import (
	"fmt"
	"strings"
)

// MaxReasonBytes bounds a lock, force or rollback reason as stored and echoed.
const MaxReasonBytes = 200

// Command is a parsed chat command.
type Command struct {
	Name    string // without the "!", lower case
	Version string // optional release the command is about
	Force   bool   // !ship --force
	Reason  string // cleaned; for !lock, !ship --force, !rollback
}

// ErrNotCommand is returned for text that is not a command at all (no leading "!").
var ErrNotCommand = fmt.Errorf("not a command")

// ParseCommand parses "!name args..." from already cleaned text. It returns
// ErrNotCommand for ordinary chat, and an error whose text is fit for the channel for
// a command with bad arguments. Unknown names parse fine; the router answers them.
func ParseCommand(text string) (Command, error) {
	text = strings.TrimSpace(text)
	if !strings.HasPrefix(text, "!") || len(text) < 2 || text[1] == ' ' || text[1] == '!' {
		return Command{}, ErrNotCommand
	}
	fields := strings.Fields(text[1:])
	c := Command{Name: strings.ToLower(fields[0])}
	args := fields[1:]
	spec, known := commandArgs[c.Name]
	if !known {
		return c, nil
	}
	switch spec {
	case argsNone:
		if len(args) > 0 {
			return c, fmt.Errorf("!%s takes no arguments", c.Name)
		}
	case argsVersion:
		if len(args) > 1 {
			return c, fmt.Errorf("!%s takes at most one argument, a release version", c.Name)
		}
		if len(args) == 1 {
			c.Version = args[0]
		}
	case argsReason:
		c.Reason = Clean(strings.Join(args, " "), MaxReasonBytes)
		if c.Reason == "" {
			return c, fmt.Errorf("!%s needs a reason, e.g. !%s db migration in progress", c.Name, c.Name)
		}
	case argsOptReason:
		c.Reason = Clean(strings.Join(args, " "), MaxReasonBytes)
	case argsShip:
		for i := 0; i < len(args); i++ {
			a := args[i]
			switch {
			case a == "--force" || a == "-f":
				c.Force = true
				c.Reason = Clean(strings.Join(args[i+1:], " "), MaxReasonBytes)
				if c.Reason == "" {
					return c, fmt.Errorf("!ship --force needs a reason: !ship --force <why it cannot wait>")
				}
				i = len(args)
			case strings.HasPrefix(a, "-"):
				return c, fmt.Errorf("!ship: unknown option %s; usage: !ship [version] [--force reason]", Clean(a, 40))
			case c.Version == "":
				c.Version = a
			default:
				return c, fmt.Errorf("!ship: unexpected %q; usage: !ship [version] [--force reason]", Clean(a, 40))
			}
		}
	}
	if c.Version != "" && !ValidVersion(c.Version) {
		return c, fmt.Errorf("%q is not a release version", Clean(c.Version, 40))
	}
	return c, nil
}

type argSpec int

const (
	argsNone argSpec = iota
	argsVersion
	argsReason
	argsOptReason
	argsShip
)

// commandArgs says how each known command takes arguments.
var commandArgs = map[string]argSpec{
	"help":     argsNone,
	"status":   argsVersion,
	"who":      argsVersion,
	"ready":    argsVersion,
	"unready":  argsVersion,
	"ship":     argsShip,
	"lock":     argsReason,
	"unlock":   argsNone,
	"history":  argsNone,
	"pause":    argsNone,
	"resume":   argsNone,
	"promote":  argsNone,
	"abort":    argsOptReason,
	"rollback": argsOptReason,
	"cancel":   argsVersion,
}

// ValidVersion reports whether v is usable as a release version: 1 to 64 bytes of
// letters, digits, '.', '-', '_' and '+', starting with a letter or digit.
func ValidVersion(v string) bool {
	if v == "" || len(v) > 64 {
		return false
	}
	for i, r := range v {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case i > 0 && (r == '.' || r == '-' || r == '_' || r == '+'):
		default:
			return false
		}
	}
	return true
}
