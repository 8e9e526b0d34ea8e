// Package distributor is shipbot's push domain: the signed Manifest that says what a
// release's artifact is, the labels that place a host in the network (rack, dc), and
// the peer policy the tracker hands peers out by. Its subpackages do the work:
// seeder (torrent + webseed at the origin), tracker (the rack-aware HTTP tracker),
// fetcher (a host's download), fleet and agent (the agent protocol).
package distributor

import (
	"errors"
	"fmt"
	"regexp"
)

// Host is an enrolled server and where it sits in the network.
type Host struct {
	Name string `json:"name"`
	Rack string `json:"rack"`
	DC   string `json:"dc"`
}

// OriginHost is the name the origin seeder (shipbot itself) goes by in the tracker.
const OriginHost = "origin"

var hostName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// ValidHostName reports whether name can name a host: 1-63 letters, digits, '.', '-'
// or '_', starting with a letter or digit.
func ValidHostName(name string) error {
	if !hostName.MatchString(name) {
		return fmt.Errorf("host name %q: use 1-63 letters, digits, '.', '-' or '_'", name)
	}
	return nil
}

// Registry tells the tracker which hosts are enrolled and where they are.
type Registry interface {
	// Host returns the enrolled host of that name.
	Host(name string) (Host, bool)
}

// StaticRegistry is a fixed set of hosts, for tests and small fleets.
type StaticRegistry map[string]Host

// Host implements Registry.
func (r StaticRegistry) Host(name string) (Host, bool) {
	h, ok := r[name]
	return h, ok
}

// ErrNotEnrolled means a host is not in the registry.
var ErrNotEnrolled = errors.New("host is not enrolled")

// PieceLength picks a torrent piece length for an artifact of size bytes: about 1000
// to 2000 pieces, as a power of two between 256 KiB and 16 MiB. Smaller pieces let
// hosts start re-sharing sooner; bigger ones keep the piece list (in the manifest)
// short for very large builds.
func PieceLength(size int64) int64 {
	const min, max = 256 << 10, 16 << 20
	l := int64(min)
	for l < max && size/l > 2000 {
		l *= 2
	}
	return l
}
