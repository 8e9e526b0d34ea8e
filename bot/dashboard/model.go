// Package dashboard serves shipbot's read-only web dashboard: the current release
// and its check-ins, the push as a grid of racks (drill down to a rack's hosts),
// the tiers with their bake countdown and gate charts, the event log and past
// releases. The page is embedded (no build step, no CDN) and updated live over
// server-sent events.
package dashboard

import "time"

// Snapshot is everything the page shows at one moment. It is aggregated per rack,
// so its size does not grow with the fleet; Hosts holds only the rack the viewer
// drilled into.
type Snapshot struct {
	At      time.Time        `json:"at"`
	Release *Release         `json:"release,omitempty"`
	Rollout *Rollout         `json:"rollout,omitempty"`
	Push    *Push            `json:"push,omitempty"`
	Racks   []Rack           `json:"racks"`
	Rack    string           `json:"rack,omitempty"` // the drilled-into rack
	Hosts   []Host           `json:"hosts,omitempty"`
	Events  []Event          `json:"events"`
	History []ReleaseSummary `json:"history"`
}

// Release is the current release: the one rolling out, else the newest one.
type Release struct {
	Version    string      `json:"version"`
	State      string      `json:"state"`
	Range      string      `json:"range"`
	Commits    int         `json:"commits"`
	Head       string      `json:"head,omitempty"` // who shipped it
	CreatedAt  time.Time   `json:"created_at"`
	ShippedAt  *time.Time  `json:"shipped_at,omitempty"`
	Committers []Committer `json:"committers"`
	Outcome    string      `json:"outcome,omitempty"`
}

// Committer is one person's check-in state.
type Committer struct {
	Person string `json:"person"`
	Ready  bool   `json:"ready"`
}

// Rollout is the rollout of the current release.
type Rollout struct {
	Phase  string `json:"phase"`
	Tier   int    `json:"tier"`
	Paused bool   `json:"paused"`
	Reason string `json:"reason,omitempty"`
	Tiers  []Tier `json:"tiers"`
	Gates  []Gate `json:"gates"`
}

// Tier states.
const (
	TierPending = "pending"
	TierBaking  = "baking"
	TierPassed  = "passed"
	TierFailed  = "failed"
)

// Tier is one tier's progress.
type Tier struct {
	Name     string  `json:"name"`
	Size     string  `json:"size"`
	State    string  `json:"state"`
	BakeLeft float64 `json:"bake_left"` // seconds, while baking
	Bake     float64 `json:"bake"`
}

// Gate is a metric gate's readings over the rollout, canary against baseline.
type Gate struct {
	Name   string  `json:"name"`
	Unit   string  `json:"unit"`
	Points []Point `json:"points"`
}

// Point is one reading; a side without data is null.
type Point struct {
	T        time.Time `json:"t"`
	Tier     string    `json:"tier"`
	Canary   *float64  `json:"canary"`
	Baseline *float64  `json:"baseline"`
}

// Push is the current release's distribution.
type Push struct {
	Release     string  `json:"release"`
	Hosts       int     `json:"hosts"`
	Staged      int     `json:"staged"`
	Bytes       int64   `json:"bytes"`
	Total       int64   `json:"total"`
	Rate        float64 `json:"rate"` // bytes/s over the last seconds
	FromPeers   int64   `json:"from_peers"`
	FromWebseed int64   `json:"from_webseed"`
	FromSeeder  int64   `json:"from_seeder"` // the origin seeder's BitTorrent upload of this release
}

// Rack aggregates a rack's hosts.
type Rack struct {
	Name      string         `json:"name"`
	Hosts     int            `json:"hosts"`
	Staged    int            `json:"staged"`
	Bytes     int64          `json:"bytes"`
	Total     int64          `json:"total"`
	Active    map[string]int `json:"active"` // release -> hosts running it
	Unhealthy int            `json:"unhealthy"`
	Stale     int            `json:"stale"`
}

// Host is one host of the drilled-into rack.
type Host struct {
	Name    string  `json:"name"`
	Staged  float64 `json:"staged"` // share of the current release held
	Active  string  `json:"active"`
	Healthy *bool   `json:"healthy"`
	Stale   bool    `json:"stale"`
}

// Event is an audit event.
type Event struct {
	At       time.Time `json:"at"`
	Actor    string    `json:"actor"`
	Release  string    `json:"release,omitempty"`
	Kind     string    `json:"kind"`
	Text     string    `json:"text"`
	Decision string    `json:"decision"`
}

// ReleaseSummary is a past release.
type ReleaseSummary struct {
	Version    string     `json:"version"`
	State      string     `json:"state"`
	Head       string     `json:"head,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	Outcome    string     `json:"outcome,omitempty"`
}
