// Package fleet is the coordinator's side of the agent protocol: enrolment, a
// long-poll for each host's desired state, and status reports, over HTTP/JSON with
// the fleet's bearer token. The registry of hosts lives in memory and is rebuilt
// from the agents' reports after a restart; desired state lives in the store.
//
//	POST /v1/agents/{host}/enroll   EnrollRequest  -> EnrollResponse
//	GET  /v1/agents/{host}/desired?after=GEN&wait=30s  -> DesiredResponse
//	POST /v1/agents/{host}/status   StatusReport
//
// Enrolment binds a host name to the agent instance that claimed it and returns a
// host key; the other calls must carry it (X-Shipbot-Host-Key), so an agent cannot
// report for another host's name.
package fleet

import (
	"time"

	"github.com/shipbot/shipbot/distributor"
)

// HeaderHostKey carries the key enrolment returned.
const HeaderHostKey = "X-Shipbot-Host-Key"

// EnrollRequest is what an agent says about itself.
type EnrollRequest struct {
	Instance string            `json:"instance"` // stable per agent install
	Rack     string            `json:"rack"`
	DC       string            `json:"dc"`
	Labels   map[string]string `json:"labels,omitempty"`
	Version  string            `json:"version"` // the agent's own version
	BTAddr   string            `json:"bt_addr"` // where it accepts BitTorrent connections
	Staged   []string          `json:"staged"`  // releases it holds
	Active   string            `json:"active"`
	Previous string            `json:"previous"`
}

// EnrollResponse tells an agent how to take part.
type EnrollResponse struct {
	HostKey     string `json:"host_key"`
	Announce    string `json:"announce"`     // this host's tracker announce URL
	WebseedBase string `json:"webseed_base"` // + release + "/" is a release's url-list entry
	ReportEvery int    `json:"report_every"` // seconds between heartbeats
}

// Desired is what a host should hold and run.
type Desired struct {
	Generation uint64   `json:"generation"`
	Stage      []string `json:"stage"`  // releases to download and keep
	Active     string   `json:"active"` // release to run; "" leaves the host as it is
}

// DesiredResponse is a host's desired state with the manifests it needs.
type DesiredResponse struct {
	Generation uint64               `json:"generation"`
	Stage      []distributor.Signed `json:"stage"`
	Active     string               `json:"active"`
}

// StageStatus is a host's progress on one release.
type StageStatus struct {
	Bytes       int64   `json:"bytes"`
	Total       int64   `json:"total"`
	Done        bool    `json:"done"`
	Rate        float64 `json:"rate"` // bytes/s
	FromPeers   int64   `json:"from_peers"`
	FromWebseed int64   `json:"from_webseed"`
	Error       string  `json:"error,omitempty"`
}

// Health is the result of a host's health check.
type Health struct {
	OK        bool      `json:"ok"`
	Detail    string    `json:"detail"`
	LatencyMS float64   `json:"latency_ms"`
	At        time.Time `json:"at"`
}

// StatusReport is what an agent reports.
type StatusReport struct {
	Staged   map[string]StageStatus `json:"staged"`
	Active   string                 `json:"active"`
	Previous string                 `json:"previous"`
	Health   *Health                `json:"health,omitempty"`
	// Error is the last failure that is not about one release (activation, disk).
	Error string `json:"error,omitempty"`
	// Metrics are counters the agent scraped from its service, for the health gates.
	Metrics map[string]float64 `json:"metrics,omitempty"`
	// MetricsRelease is the release that was active through the whole scrape: the
	// counters belong to it. An agent drops its counters when it activates another.
	MetricsRelease string `json:"metrics_release,omitempty"`
}

// HostState is the registry's view of a host.
type HostState struct {
	Host     distributor.Host       `json:"host"`
	Instance string                 `json:"instance"`
	BTAddr   string                 `json:"bt_addr"`
	Enrolled time.Time              `json:"enrolled"`
	LastSeen time.Time              `json:"last_seen"`
	Stale    bool                   `json:"stale"`
	Staged   map[string]StageStatus `json:"staged"`
	Active   string                 `json:"active"`
	Previous string                 `json:"previous"`
	Health   *Health                `json:"health,omitempty"`
	Error    string                 `json:"error,omitempty"`
	Metrics  map[string]float64     `json:"metrics,omitempty"`
	// MetricsRelease is the release the Metrics were scraped from.
	MetricsRelease string  `json:"metrics_release,omitempty"`
	Desired        Desired `json:"desired"`
}
