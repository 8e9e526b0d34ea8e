package bot

import (
	"fmt"
	"sort"
	"strings"
)

// Person is someone shipbot knows: a committer, a release head, or both.
type Person struct {
	Name   string
	Emails []string
	Slack  string      // Slack user ID, e.g. U012AB3CD
	IRC    IRCIdentity // how the person is recognised on IRC
}

// IRCIdentity says how a person is recognised on IRC. See Directory.Identify.
type IRCIdentity struct {
	Account string   // IRCv3 account name (SASL / account-tag)
	Masks   []string // nick!user@host globs, used only when the server gives no account
	Nick    string   // the nick to mention; defaults to the first mask's nick or Name
}

// MentionNick is the nick to use when mentioning p on IRC.
func (p *Person) MentionNick() string {
	if p.IRC.Nick != "" {
		return p.IRC.Nick
	}
	for _, m := range p.IRC.Masks {
		if i := strings.IndexByte(m, '!'); i > 0 && !strings.ContainsAny(m[:i], "*?") {
			return m[:i]
		}
	}
	if p.IRC.Account != "" {
		return p.IRC.Account
	}
	return p.Name
}

// Role is a set of powers in the channel.
type Role string

// Roles. Admins can do everything release heads can.
const (
	RoleHead  Role = "release_head"
	RoleAdmin Role = "admin"
)

// Directory is the configured set of people and their roles.
type Directory struct {
	people  []*Person
	byName  map[string]*Person
	byEmail map[string]*Person
	roles   map[string]map[Role]bool
}

// NewDirectory builds a directory. heads and admins name people; every name must
// exist, and emails and chat identities must be unique.
func NewDirectory(people []Person, heads, admins []string) (*Directory, error) {
	d := &Directory{
		byName:  map[string]*Person{},
		byEmail: map[string]*Person{},
		roles:   map[string]map[Role]bool{},
	}
	slack := map[string]string{}
	account := map[string]string{}
	for i := range people {
		p := people[i]
		if p.Name == "" {
			return nil, fmt.Errorf("people[%d]: name is empty", i)
		}
		if _, dup := d.byName[p.Name]; dup {
			return nil, fmt.Errorf("people[%d]: name %q appears twice", i, p.Name)
		}
		d.people = append(d.people, &p)
		d.byName[p.Name] = &p
		for _, e := range p.Emails {
			k := strings.ToLower(e)
			if o, dup := d.byEmail[k]; dup {
				return nil, fmt.Errorf("people[%d]: email %q is also %s's", i, e, o.Name)
			}
			d.byEmail[k] = &p
		}
		if p.Slack != "" {
			if o, dup := slack[p.Slack]; dup {
				return nil, fmt.Errorf("people[%d]: slack ID %q is also %s's", i, p.Slack, o)
			}
			slack[p.Slack] = p.Name
		}
		if a := strings.ToLower(p.IRC.Account); a != "" {
			if o, dup := account[a]; dup {
				return nil, fmt.Errorf("people[%d]: irc account %q is also %s's", i, p.IRC.Account, o)
			}
			account[a] = p.Name
		}
	}
	for role, names := range map[Role][]string{RoleHead: heads, RoleAdmin: admins} {
		for _, n := range names {
			if d.byName[n] == nil {
				return nil, fmt.Errorf("roles: %s %q is not in people", role, n)
			}
			if d.roles[n] == nil {
				d.roles[n] = map[Role]bool{}
			}
			d.roles[n][role] = true
		}
	}
	return d, nil
}

// Person returns the person with the given name, or nil.
func (d *Directory) Person(name string) *Person { return d.byName[name] }

// ByEmail maps a commit email to a person, case-insensitively.
func (d *Directory) ByEmail(email string) *Person { return d.byEmail[strings.ToLower(email)] }

// Can reports whether the named person may act as role. Admins hold every role.
func (d *Directory) Can(name string, role Role) bool {
	r := d.roles[name]
	return r[role] || r[RoleAdmin]
}

// WithRole lists the people who hold role (admins included), in name order.
func (d *Directory) WithRole(role Role) []string {
	var out []string
	for _, p := range d.people {
		if d.Can(p.Name, role) {
			out = append(out, p.Name)
		}
	}
	sort.Strings(out)
	return out
}
