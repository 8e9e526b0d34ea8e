package bot

import (
	"context"
)

// Message is one line a person typed in the release channel.
type Message struct {
	Sender  Sender
	Channel string
	Text    string
}

// Priority orders outgoing lines on rate-limited networks: a verdict or a rollback
// must never wait behind progress chatter.
type Priority int

// Priorities, lowest first.
const (
	PriorityProgress Priority = iota // may be batched or replaced
	PriorityNormal                   // replies, announcements
	PriorityUrgent                   // failures, rollbacks: jump the queue
)

// Post is a line (or a few) the bot sends to the channel.
type Post struct {
	Text     string
	Priority Priority
	// Key names a message that later posts with the same key replace, where the
	// network can edit in place (Slack's chat.update). Empty means a new message.
	Key string
	// UpdateOnly posts only refresh a keyed message in place; networks that cannot
	// edit drop them (the change was already said in a line of its own).
	UpdateOnly bool
	// Card is a release's check-in list, for networks that draw it (Slack's Block
	// Kit, with a Ready button); the others show Text.
	Card *CheckinCard
}

// CheckinCard is a release's check-in list.
type CheckinCard struct {
	Release    string
	Summary    string // "3 commits (v41..v42)"
	Open       bool   // still in check-in: the Ready button works
	Committers []CardEntry
	Unmapped   []string
}

// CardEntry is one committer on the card.
type CardEntry struct {
	Person  string
	Mention string
	Ready   bool
}

// Chat is what the bot needs from a chat network: a way to speak in the channel and
// to render a mention of a person. Adapters turn incoming lines into Messages with a
// stable Sender and pass them to a Handler.
type Chat interface {
	Send(ctx context.Context, p Post) error
	// Mention renders a mention that notifies the person on this network.
	Mention(p *Person) string
}

// Handler receives messages from a chat adapter.
type Handler interface {
	Handle(ctx context.Context, m Message)
}

// Adapter is a chat network connection: a Chat that also delivers messages.
type Adapter interface {
	Chat
	// Run delivers messages to h until ctx is done or the adapter fails for good.
	Run(ctx context.Context, h Handler) error
}

// Store keeps the ledger. Every chat command runs in exactly one Update, so a
// command's state change and its audit event commit together or not at all.
type Store interface {
	Update(ctx context.Context, fn func(Tx) error) error
	View(ctx context.Context, fn func(Tx) error) error
}

// Tx is one store transaction.
type Tx interface {
	// Release returns the release with the given version, or ErrNotFound.
	Release(version string) (*Release, error)
	// CreateRelease stores a new release and assigns its Seq; ErrExists if the
	// version is taken.
	CreateRelease(r *Release) error
	// PutRelease updates an existing release.
	PutRelease(r *Release) error
	// OpenReleases returns the releases in a non-terminal state, oldest first.
	OpenReleases() ([]*Release, error)
	// RecentReleases returns up to n releases, newest first.
	RecentReleases(n int) ([]*Release, error)

	// Lock returns the channel lock, or nil when unlocked.
	Lock() (*Lock, error)
	// SetLock sets the lock; nil clears it.
	SetLock(l *Lock) error

	// Append adds an event to the audit log and assigns its Seq.
	Append(e *Event) error
}
