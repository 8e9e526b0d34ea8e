package bot

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
)

// releasesFor returns the open releases a command is about: the named one, or every
// open release in the given states, oldest first.
func (c *call) releasesFor(states ...State) ([]*Release, error) {
	if c.cmd.Version != "" {
		r, err := c.tx.Release(c.cmd.Version)
		if errors.Is(err, ErrNotFound) {
			c.refuse("there is no release %s", c.cmd.Version)
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return []*Release{r}, nil
	}
	open, err := c.tx.OpenReleases()
	if err != nil {
		return nil, err
	}
	var out []*Release
	for _, r := range open {
		for _, s := range states {
			if r.State == s {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

func (b *Bot) cmdHelp(c *call) error {
	c.say("commands:")
	for _, cmd := range b.commands {
		who := ""
		if cmd.role != "" {
			who = " (release heads)"
		}
		c.say("  %s: %s%s", cmd.usage, cmd.help, who)
	}
	return nil
}

func (b *Bot) cmdReady(c *call) error   { return b.setReady(c, true) }
func (b *Bot) cmdUnready(c *call) error { return b.setReady(c, false) }

func (b *Bot) setReady(c *call, ready bool) error {
	rels, err := c.releasesFor(StateCheckin)
	if err != nil || c.refused {
		return err
	}
	if len(rels) == 0 {
		c.refuse("no release is waiting for check-ins")
		return nil
	}
	var mine []*Release
	for _, r := range rels {
		if r.Committer(c.person.Name) != nil {
			mine = append(mine, r)
		}
	}
	if len(mine) == 0 {
		r := rels[0]
		if c.cmd.Version != "" && r.State != StateCheckin {
			c.refuse("%s is %s; check-ins are closed", r.Version, r.State)
			return nil
		}
		c.refuse("you are not a committer of %s, so there is nothing to check in (committers: %s)", versions(rels), strings.Join(names(r), ", "))
		return nil
	}
	for _, r := range mine {
		c.release = r.Version
		if r.State != StateCheckin {
			c.refuse("%s is %s; check-ins are closed", r.Version, r.State)
			continue
		}
		cm := r.Committer(c.person.Name)
		switch {
		case ready && cm.Ready:
			c.say("you are already checked in for %s (%d/%d ready)", r.Version, r.ReadyCount(), len(r.Committers))
			continue
		case !ready && !cm.Ready:
			c.say("you were not checked in for %s", r.Version)
			continue
		}
		cm.Ready, cm.ReadyAt = ready, c.now
		if !ready {
			cm.ReadyAt = time.Time{}
		}
		if err := c.tx.PutRelease(r); err != nil {
			return err
		}
		c.refreshCard(b, r)
		missing := r.Missing()
		switch {
		case !ready:
			c.say("check-in for %s taken back (%d/%d ready)", r.Version, r.ReadyCount(), len(r.Committers))
		case len(missing) == 0:
			c.say("checked in for %s. Everyone is in (%d/%d); a release head can !ship", r.Version, r.ReadyCount(), len(r.Committers))
		default:
			c.say("checked in for %s (%d/%d ready; waiting for %s)", r.Version, r.ReadyCount(), len(r.Committers), strings.Join(missing, ", "))
		}
	}
	return nil
}

func (b *Bot) cmdWho(c *call) error {
	rels, err := c.releasesFor(StateCheckin)
	if err != nil || c.refused {
		return err
	}
	if len(rels) == 0 {
		c.say("no release is waiting for check-ins")
		return nil
	}
	for _, r := range rels {
		c.release = r.Version
		if m := r.Missing(); len(m) > 0 {
			c.say("%s is waiting for %d of %d: %s", r.Version, len(m), len(r.Committers), b.mentions(m))
		} else {
			c.say("%s: everyone has checked in (%d/%d); a release head can !ship", r.Version, len(r.Committers), len(r.Committers))
		}
	}
	return nil
}

func (b *Bot) cmdStatus(c *call) error {
	rels, err := c.releasesFor(StateCheckin, StateShipping)
	if err != nil || c.refused {
		return err
	}
	if len(rels) == 0 {
		c.say("no release is open")
	}
	for _, r := range rels {
		c.release = r.Version
		c.say("%s: %s; %d commits (%s); artifact %s, %s, sha256 %.12s",
			r.Version, r.State, r.Commits, r.Range, r.Artifact.Name, HumanBytes(r.Artifact.Size), r.Artifact.SHA256)
		var in []string
		for _, cm := range r.Committers {
			if cm.Ready {
				in = append(in, cm.Person+" ("+stamp(cm.ReadyAt, c.now)+")")
			}
		}
		sort.Strings(in)
		c.say("  checked in %d/%d: %s", r.ReadyCount(), len(r.Committers), orNone(strings.Join(in, ", ")))
		if m := r.Missing(); len(m) > 0 {
			c.say("  missing: %s", strings.Join(m, ", "))
		}
		if len(r.Unmapped) > 0 {
			c.say("  unmapped emails: %s", strings.Join(r.Unmapped, ", "))
		}
		if r.State == StateShipping {
			line := fmt.Sprintf("  shipped by %s at %s", r.Head, stamp(r.ShippedAt, c.now))
			if r.ForceReason != "" {
				line += " with --force: " + r.ForceReason
			}
			c.say("%s", line)
		}
	}
	if b.Rollouts != nil {
		// After the commit: the engine and the fleet take their own locks and may be
		// waiting for this very transaction.
		c.after = append(c.after, func(ctx context.Context) {
			if lines := b.Rollouts.Status(ctx); len(lines) > 0 {
				b.Say(ctx, Post{Text: strings.Join(lines, "\n"), Priority: PriorityNormal})
			}
		})
	}
	l, err := c.tx.Lock()
	if err != nil {
		return err
	}
	if l != nil {
		c.say("locked by %s since %s: %s", l.By, stamp(l.At, c.now), l.Reason)
	}
	return nil
}

func (b *Bot) cmdShip(c *call) error {
	l, err := c.tx.Lock()
	if err != nil {
		return err
	}
	if l != nil {
		c.refuse("!ship refused: the channel is locked by %s since %s: %s. A release head can !unlock", l.By, stamp(l.At, c.now), l.Reason)
		return nil
	}
	rels, err := c.releasesFor(StateCheckin)
	if err != nil || c.refused {
		return err
	}
	if len(rels) == 0 {
		c.refuse("!ship refused: no release is waiting to ship")
		return nil
	}
	open, err := c.tx.OpenReleases()
	if err != nil {
		return err
	}
	for _, o := range open {
		if o.State == StateShipping {
			c.refuse("!ship refused: %s is still rolling out; one rollout at a time, so %s waits in check-in", o.Version, rels[0].Version)
			return nil
		}
	}
	r := rels[0]
	c.release = r.Version
	if r.State != StateCheckin {
		c.refuse("!ship refused: %s is %s", r.Version, r.State)
		return nil
	}
	if m := r.Missing(); len(m) > 0 && !c.cmd.Force {
		c.refuse("!ship refused: %d of %d committers %s not checked in: %s. Wait for them, or !ship --force <reason>",
			len(m), len(r.Committers), map[bool]string{true: "has", false: "have"}[len(m) == 1], b.mentions(m))
		return nil
	}
	r.State, r.Head, r.ShippedAt = StateShipping, c.person.Name, c.now
	if c.cmd.Force {
		r.ForceReason = c.cmd.Reason
	}
	if err := c.tx.PutRelease(r); err != nil {
		return err
	}
	if c.cmd.Force && len(r.Missing()) > 0 {
		c.say("shipping %s with --force (%s); not checked in: %s", r.Version, r.ForceReason, strings.Join(r.Missing(), ", "))
	} else {
		c.say("shipping %s: %d commits, %d/%d checked in", r.Version, r.Commits, r.ReadyCount(), len(r.Committers))
	}
	shipped := *r
	if b.OnShip != nil {
		c.after = append(c.after, func(ctx context.Context) { b.OnShip(ctx, &shipped) })
	}
	return nil
}

// cmdRollout checks who may act inside the transaction, and acts on the engine
// after it commits (the engine saves its own state).
func (b *Bot) cmdRollout(c *call) error {
	rel, ok := b.Rollouts.Running()
	if !ok {
		c.refuse("no rollout is running")
		return nil
	}
	c.release = rel
	if c.cmd.Name == "rollback" && !b.Dir.Can(c.person.Name, RoleHead) {
		r, err := c.tx.Release(rel)
		if err != nil {
			return err
		}
		if r.Committer(c.person.Name) == nil {
			c.refuse("!rollback is for release heads and the committers of %s (%s)", rel, strings.Join(names(r), ", "))
			return nil
		}
	}
	who, name, reason := c.person.Name, c.cmd.Name, c.cmd.Reason
	c.after = append(c.after, func(ctx context.Context) {
		var line string
		var err error
		switch name {
		case "pause":
			line, err = b.Rollouts.Pause(ctx, who)
		case "resume":
			line, err = b.Rollouts.Resume(ctx, who)
		case "promote":
			line, err = b.Rollouts.Promote(ctx, who)
		case "abort":
			line, err = b.Rollouts.Rollback(ctx, who, "aborted by "+who+orEmpty(": ", reason))
		case "rollback":
			line, err = b.Rollouts.Rollback(ctx, who, "rolled back by "+who+orEmpty(": ", reason))
		}
		if err != nil {
			line = fmt.Sprintf("!%s: %v", name, err)
		}
		b.Say(ctx, Post{Text: line, Priority: PriorityNormal})
	})
	return nil
}

func orEmpty(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

func (b *Bot) cmdCancel(c *call) error {
	rels, err := c.releasesFor(StateCheckin)
	if err != nil || c.refused {
		return err
	}
	if len(rels) == 0 {
		c.refuse("no release is in check-in")
		return nil
	}
	r := rels[0]
	c.release = r.Version
	if r.State != StateCheckin {
		c.refuse("%s is %s; only a release in check-in can be cancelled", r.Version, r.State)
		return nil
	}
	r.State, r.FinishedAt, r.Outcome = StateCancelled, c.now, "cancelled by "+c.person.Name
	if err := c.tx.PutRelease(r); err != nil {
		return err
	}
	c.say("%s cancelled", r.Version)
	return nil
}

func (b *Bot) cmdLock(c *call) error {
	l, err := c.tx.Lock()
	if err != nil {
		return err
	}
	if l != nil {
		c.refuse("already locked by %s since %s: %s", l.By, stamp(l.At, c.now), l.Reason)
		return nil
	}
	if err := c.tx.SetLock(&Lock{By: c.person.Name, Reason: c.cmd.Reason, At: c.now}); err != nil {
		return err
	}
	c.say("locked: no !ship until a release head types !unlock (%s)", c.cmd.Reason)
	return nil
}

func (b *Bot) cmdUnlock(c *call) error {
	l, err := c.tx.Lock()
	if err != nil {
		return err
	}
	if l == nil {
		c.refuse("the channel is not locked")
		return nil
	}
	if err := c.tx.SetLock(nil); err != nil {
		return err
	}
	c.say("unlocked (was locked by %s since %s: %s)", l.By, stamp(l.At, c.now), l.Reason)
	return nil
}

// HistoryLen is how many releases !history shows.
const HistoryLen = 5

func (b *Bot) cmdHistory(c *call) error {
	rels, err := c.tx.RecentReleases(HistoryLen)
	if err != nil {
		return err
	}
	if len(rels) == 0 {
		c.say("no releases yet")
		return nil
	}
	c.say("last %s:", plural(len(rels), "release"))
	for _, r := range rels {
		line := fmt.Sprintf("  %s %s, created %s", r.Version, r.State, stamp(r.CreatedAt, c.now))
		if r.Head != "" {
			line += fmt.Sprintf(", shipped by %s at %s", r.Head, stamp(r.ShippedAt, c.now))
		}
		if !r.FinishedAt.IsZero() {
			line += ", finished " + stamp(r.FinishedAt, c.now)
		}
		if r.Outcome != "" {
			line += ": " + r.Outcome
		}
		c.say("%s", line)
	}
	return nil
}

// NewRelease is what CI registers: a stored artifact and the commits of the range.
type NewRelease struct {
	Version   string
	Range     string
	Commits   []Commit
	Artifact  Artifact
	CreatedBy string
}

// CommittersOf maps the people who must check in from a range's commits. The rule:
// every commit's author and Co-authored-by trailers count, except for merge commits,
// whose changes are the merged commits (already in the range). A merge that carries a
// conflict resolution of its own (Resolved) counts like any other commit. Emails no
// configured person has are returned as unmapped, in order of first appearance.
func CommittersOf(commits []Commit, dir *Directory) (people, unmapped []string) {
	seenP, seenE := map[string]bool{}, map[string]bool{}
	for _, c := range commits {
		if c.Merge && !c.Resolved {
			continue
		}
		for _, e := range append([]string{c.Author}, c.CoAuthors...) {
			e = strings.ToLower(strings.TrimSpace(e))
			if e == "" {
				continue
			}
			if p := dir.ByEmail(e); p != nil {
				if !seenP[p.Name] {
					seenP[p.Name] = true
					people = append(people, p.Name)
				}
			} else if !seenE[e] {
				seenE[e] = true
				unmapped = append(unmapped, e)
			}
		}
	}
	sort.Strings(people)
	return people, unmapped
}

// CreateRelease records a release in check-in and announces it. The artifact must
// already be stored. It fails with ErrExists if the version is taken.
func (b *Bot) CreateRelease(ctx context.Context, nr NewRelease) (*Release, error) {
	if !ValidVersion(nr.Version) {
		return nil, fmt.Errorf("version %q: use 1-64 letters, digits, '.', '-', '_' or '+'", nr.Version)
	}
	people, unmapped := CommittersOf(nr.Commits, b.Dir)
	r := &Release{
		Version: nr.Version, State: StateCheckin, Range: nr.Range, Commits: len(nr.Commits),
		Unmapped: unmapped, Artifact: nr.Artifact, CreatedBy: nr.CreatedBy, CreatedAt: b.Clock.Now(),
	}
	for _, p := range people {
		r.Committers = append(r.Committers, Committer{Person: p})
	}
	text := b.announcement(r)
	err := b.Store.Update(ctx, func(tx Tx) error {
		if err := tx.CreateRelease(r); err != nil {
			return err
		}
		return tx.Append(&Event{At: r.CreatedAt, Actor: "api", Sender: nr.CreatedBy, Release: r.Version,
			Kind: "release.created", Text: fmt.Sprintf("%s %s sha256:%s", r.Range, r.Artifact.Name, r.Artifact.SHA256),
			Decision: Accepted, Reply: text})
	})
	if err != nil {
		return nil, fmt.Errorf("create release %s: %w", nr.Version, err)
	}
	b.Log.Info("release created", zap.String("release", r.Version), zap.Int("commits", r.Commits),
		zap.Strings("committers", people), zap.Strings("unmapped", unmapped))
	b.Say(ctx, Post{Text: text, Priority: PriorityNormal, Key: CardKey(r.Version), Card: b.card(r)})
	return r, nil
}

// CardKey keys a release's check-in card, so networks that edit in place keep
// one card per release up to date.
func CardKey(version string) string { return "checkin:" + version }

func (b *Bot) card(r *Release) *CheckinCard {
	c := &CheckinCard{Release: r.Version, Summary: fmt.Sprintf("%d commits (%s)", r.Commits, r.Range),
		Open: r.State == StateCheckin, Unmapped: r.Unmapped}
	for _, cm := range r.Committers {
		c.Committers = append(c.Committers, CardEntry{Person: cm.Person, Mention: b.mention(cm.Person), Ready: cm.Ready})
	}
	return c
}

// refreshCard redraws a release's check-in card in place, where the network can.
func (c *call) refreshCard(b *Bot, r *Release) {
	card := b.card(r)
	text := fmt.Sprintf("release %s: %d/%d checked in", r.Version, r.ReadyCount(), len(r.Committers))
	c.after = append(c.after, func(ctx context.Context) {
		b.Say(ctx, Post{Text: text, Priority: PriorityNormal, Key: CardKey(r.Version), UpdateOnly: true, Card: card})
	})
}

func (b *Bot) announcement(r *Release) string {
	var s strings.Builder
	fmt.Fprintf(&s, "release %s is up for check-in: %d commits (%s), %s",
		r.Version, r.Commits, r.Range, plural(len(r.Committers), "committer"))
	if len(r.Committers) > 0 {
		fmt.Fprintf(&s, ". %s: type !ready when you are around to support your change", b.mentions(names(r)))
	} else {
		s.WriteString(". Nobody needs to check in; a release head can !ship")
	}
	if len(r.Unmapped) > 0 {
		fmt.Fprintf(&s, "\nunmapped emails (add them to people in the config): %s", strings.Join(r.Unmapped, ", "))
	}
	return s.String()
}

// Run reminds missing committers until ctx is done: each release in check-in is
// reminded ReminderInterval after it was announced, and again every interval.
func (b *Bot) Run(ctx context.Context) error {
	if b.ReminderInterval <= 0 {
		<-ctx.Done()
		return nil
	}
	// Look four times per interval, so a reminder is at most a quarter late.
	t := b.Clock.NewTicker(b.ReminderInterval / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.Chan():
			if err := b.remind(ctx); err != nil && ctx.Err() == nil {
				b.Log.Error("reminder failed", zap.Error(err))
			}
		}
	}
}

func (b *Bot) remind(ctx context.Context) error {
	now := b.Clock.Now()
	var posts []string
	err := b.Store.Update(ctx, func(tx Tx) error {
		posts = nil
		open, err := tx.OpenReleases()
		if err != nil {
			return err
		}
		for _, r := range open {
			m := r.Missing()
			last := r.CreatedAt
			if r.RemindedAt.After(last) {
				last = r.RemindedAt
			}
			if r.State != StateCheckin || len(m) == 0 || now.Sub(last) < b.ReminderInterval {
				continue
			}
			r.RemindedAt = now
			if err := tx.PutRelease(r); err != nil {
				return err
			}
			text := fmt.Sprintf("reminder: %s is waiting for %s (%d/%d checked in, open for %s). Type !ready when you can support your change",
				r.Version, b.mentions(m), r.ReadyCount(), len(r.Committers), now.Sub(r.CreatedAt).Round(time.Second))
			if err := tx.Append(&Event{At: now, Actor: "shipbot", Release: r.Version, Kind: "reminder", Decision: Info, Reply: text}); err != nil {
				return err
			}
			posts = append(posts, text)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range posts {
		b.Say(ctx, Post{Text: p, Priority: PriorityNormal})
	}
	return nil
}

func names(r *Release) []string {
	out := make([]string, len(r.Committers))
	for i, c := range r.Committers {
		out[i] = c.Person
	}
	return out
}

func versions(rs []*Release) string {
	v := make([]string, len(rs))
	for i, r := range rs {
		v[i] = r.Version
	}
	return strings.Join(v, ", ")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func orNone(s string) string {
	if s == "" {
		return "nobody yet"
	}
	return s
}

// stamp formats t for chat: the time of day in UTC, with the date when it is not today.
func stamp(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	t, now = t.UTC(), now.UTC()
	if t.YearDay() == now.YearDay() && t.Year() == now.Year() {
		return t.Format("15:04:05") + " UTC"
	}
	return t.Format("Jan 2 15:04") + " UTC"
}

// HumanBytes renders a byte count with a binary unit.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
