package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// topology is the shaped test network:
//
//	sbp-spine   one namespace holding br-spine and a bridge per rack (br-rK);
//	            each rack bridge joins br-spine through a veth pair (the uplink)
//	sbp-o       the origin, with a veth to br-spine
//	sbp-hNN     one namespace per host, with a veth to its rack's bridge
//
// Every veth has tc tbf on both ends, so both directions are shaped. All addresses are
// in 10.77.0.0/16 inside namespaces this program creates and deletes; no host has a
// default route.
type topology struct {
	hosts, racks         int
	hostMbit, uplinkMbit float64
}

const nsPrefix = "sbp-"

func netnsAvailable() bool {
	if os.Geteuid() != 0 {
		return false
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return false
	}
	if _, err := exec.LookPath("tc"); err != nil {
		return false
	}
	name := nsPrefix + "probe"
	if exec.Command("ip", "netns", "add", name).Run() != nil {
		return false
	}
	exec.Command("ip", "netns", "del", name).Run()
	return true
}

func (t *topology) originNS() string        { return nsPrefix + "o" }
func (t *topology) originIP() string        { return "10.77.0.1" }
func (t *topology) hostNS(i int) string     { return fmt.Sprintf("%sh%02d", nsPrefix, i) }
func (t *topology) hostIP(i int) string     { return fmt.Sprintf("10.77.%d.%d", 1+i%t.racks, 10+i) }
func (t *topology) spine() string           { return nsPrefix + "spine" }
func (t *topology) rackBridge(k int) string { return fmt.Sprintf("br-r%d", k) }

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func inNS(ns string, args ...string) error {
	return run(append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// shape puts tbf on a device: burst 128kb keeps TCP's large segments whole (a smaller
// burst roughly doubles the CPU cost on 2 cores).
func shape(ns, dev string, mbit float64) error {
	return inNS(ns, "tc", "qdisc", "replace", "dev", dev, "root", "tbf",
		"rate", fmt.Sprintf("%.0fmbit", mbit), "burst", "128kb", "latency", "50ms")
}

// link makes a veth pair a<->b with a in nsA and b in nsB, both shaped to mbit.
func link(nsA, a, nsB, b string, mbit float64) error {
	if err := run("ip", "link", "add", a, "type", "veth", "peer", "name", b); err != nil {
		return err
	}
	if err := run("ip", "link", "set", a, "netns", nsA); err != nil {
		return err
	}
	if err := run("ip", "link", "set", b, "netns", nsB); err != nil {
		return err
	}
	for _, e := range [][2]string{{nsA, a}, {nsB, b}} {
		if err := inNS(e[0], "ip", "link", "set", e[1], "up"); err != nil {
			return err
		}
		if err := shape(e[0], e[1], mbit); err != nil {
			return err
		}
	}
	return nil
}

func (t *topology) build() error {
	sp := t.spine()
	for _, ns := range append([]string{sp, t.originNS()}, t.hostNames()...) {
		if err := run("ip", "netns", "add", ns); err != nil {
			return err
		}
		if err := inNS(ns, "ip", "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	bridges := []string{"br-spine"}
	for k := 0; k < t.racks; k++ {
		bridges = append(bridges, t.rackBridge(k))
	}
	for _, br := range bridges {
		if err := inNS(sp, "ip", "link", "add", br, "type", "bridge"); err != nil {
			return err
		}
		if err := inNS(sp, "ip", "link", "set", br, "up"); err != nil {
			return err
		}
	}
	for k := 0; k < t.racks; k++ {
		a, b := fmt.Sprintf("up%da", k), fmt.Sprintf("up%db", k)
		if err := link(sp, a, sp, b, t.uplinkMbit); err != nil {
			return err
		}
		if err := inNS(sp, "ip", "link", "set", a, "master", t.rackBridge(k)); err != nil {
			return err
		}
		if err := inNS(sp, "ip", "link", "set", b, "master", "br-spine"); err != nil {
			return err
		}
	}
	if err := link(t.originNS(), "v-o", sp, "org", t.hostMbit); err != nil {
		return err
	}
	if err := inNS(sp, "ip", "link", "set", "org", "master", "br-spine"); err != nil {
		return err
	}
	if err := inNS(t.originNS(), "ip", "addr", "add", t.originIP()+"/16", "dev", "v-o"); err != nil {
		return err
	}
	for i := 0; i < t.hosts; i++ {
		peer := fmt.Sprintf("h%02d", i)
		if err := link(t.hostNS(i), "v-"+peer, sp, peer, t.hostMbit); err != nil {
			return err
		}
		if err := inNS(sp, "ip", "link", "set", peer, "master", t.rackBridge(i%t.racks)); err != nil {
			return err
		}
		if err := inNS(t.hostNS(i), "ip", "addr", "add", t.hostIP(i)+"/16", "dev", "v-"+peer); err != nil {
			return err
		}
	}
	return nil
}

func (t *topology) hostNames() []string {
	var out []string
	for i := 0; i < t.hosts; i++ {
		out = append(out, t.hostNS(i))
	}
	return out
}

// cleanup deletes every namespace this program may have made, also ones left by an
// earlier run that was killed.
func (t *topology) cleanup() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && strings.HasPrefix(f[0], nsPrefix) {
			exec.Command("ip", "netns", "del", f[0]).Run()
		}
	}
}
