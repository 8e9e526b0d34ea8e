// Package bot is shipbot's release domain: releases, people, check-ins, locks and
// audit events, the chat command router with its ACL, and the interfaces the domain
// consumes (Chat, Store). It depends on no chat network and no database; adapters in
// subpackages (bot/console, bot/irc, bot/slack) and store/ implement its interfaces.
package bot

import (
	"errors"
	"sort"
	"time"
)

// State is where a release is in its lifecycle.
//
//	checkin -> shipping -> done
//	checkin -> cancelled
//	shipping -> rolled_back
//
// The rollout engine refines `shipping` into staging and tiers; see bot/rollout.
type State string

// Release states.
const (
	StateCheckin    State = "checkin"
	StateShipping   State = "shipping"
	StateDone       State = "done"
	StateCancelled  State = "cancelled"
	StateRolledBack State = "rolled_back"
)

// Terminal reports whether a release in state s can no longer change.
func (s State) Terminal() bool {
	return s == StateDone || s == StateCancelled || s == StateRolledBack
}

// Sentinel errors. Stores and the API map to them; chat replies are written by hand.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
)

// Artifact is a build stored by shipbot, identified by content.
type Artifact struct {
	Name   string `json:"name"`   // file name, e.g. app.tar.gz
	Path   string `json:"path"`   // where shipbot keeps it, relative to its artifacts dir
	Size   int64  `json:"size"`   // bytes
	SHA256 string `json:"sha256"` // hex
	Source string `json:"source"` // "upload" or the URL it was fetched from
}

// Commit is one commit of a release's range, as git reports it.
type Commit struct {
	SHA       string   `json:"sha"`
	Author    string   `json:"author"`              // email
	CoAuthors []string `json:"coauthors,omitempty"` // emails from Co-authored-by trailers
	Subject   string   `json:"subject"`
	Merge     bool     `json:"merge,omitempty"`
	// Resolved is true for a merge commit that carries changes of its own (a
	// conflict resolution). Only then does a merge's author count as a committer.
	Resolved bool `json:"resolved,omitempty"`
}

// Committer is a person who must check in for a release.
type Committer struct {
	Person  string    `json:"person"`
	Ready   bool      `json:"ready"`
	ReadyAt time.Time `json:"ready_at,omitzero"`
}

// Release is a build plus the commit range it contains, and its check-in round.
type Release struct {
	Version    string      `json:"version"` // unique; also the release's ID
	Seq        uint64      `json:"seq"`     // creation order, assigned by the store
	State      State       `json:"state"`
	Range      string      `json:"range"` // e.g. v41..v42
	Commits    int         `json:"commits"`
	Committers []Committer `json:"committers"`
	Unmapped   []string    `json:"unmapped,omitempty"` // emails no configured person has
	Artifact   Artifact    `json:"artifact"`
	CreatedBy  string      `json:"created_by"`
	CreatedAt  time.Time   `json:"created_at"`
	RemindedAt time.Time   `json:"reminded_at,omitzero"` // last reminder of missing committers

	Head        string    `json:"head,omitempty"` // the release head who shipped it
	ShippedAt   time.Time `json:"shipped_at,omitzero"`
	ForceReason string    `json:"force_reason,omitempty"`
	FinishedAt  time.Time `json:"finished_at,omitzero"`
	Outcome     string    `json:"outcome,omitempty"` // a line for !history
}

// Committer returns the committer entry for person, or nil.
func (r *Release) Committer(person string) *Committer {
	for i := range r.Committers {
		if r.Committers[i].Person == person {
			return &r.Committers[i]
		}
	}
	return nil
}

// Missing lists the committers who have not checked in, in name order.
func (r *Release) Missing() []string {
	var out []string
	for _, c := range r.Committers {
		if !c.Ready {
			out = append(out, c.Person)
		}
	}
	sort.Strings(out)
	return out
}

// ReadyCount returns how many committers have checked in.
func (r *Release) ReadyCount() int {
	n := 0
	for _, c := range r.Committers {
		if c.Ready {
			n++
		}
	}
	return n
}

// Lock holds the channel: while it is set, !ship is refused.
type Lock struct {
	By     string    `json:"by"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// Event is one entry of the append-only audit log: who said what, when, and what
// the bot decided.
type Event struct {
	Seq      uint64    `json:"seq"` // assigned by the store
	At       time.Time `json:"at"`
	Actor    string    `json:"actor"`            // person name, "api", or "shipbot"
	Sender   string    `json:"sender,omitempty"` // the chat identity it came from
	Release  string    `json:"release,omitempty"`
	Kind     string    `json:"kind"` // command, release.created, reminder, ...
	Text     string    `json:"text,omitempty"`
	Decision string    `json:"decision"` // accepted, refused, info
	Reply    string    `json:"reply,omitempty"`
}

// Decisions recorded in events.
const (
	Accepted = "accepted"
	Refused  = "refused"
	Info     = "info"
)
