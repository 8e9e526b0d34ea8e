package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/shipbot/shipbot/bot/console"
	"github.com/shipbot/shipbot/bot/dashboard"
	"github.com/shipbot/shipbot/bot/dashboard/browsertest"
	"github.com/shipbot/shipbot/distributor"
	"github.com/shipbot/shipbot/distributor/fleet"
)

// TestDashboardTenThousandHosts enrols a simulated fleet of 10,000 hosts in 100
// racks through the fleet API, then checks that the dashboard's snapshot stays
// small (it is per rack), and that Chromium renders the 100 racks and drills
// into one rack's 100 hosts on a click.
func TestDashboardTenThousandHosts(t *testing.T) {
	const racks, perRack = 100, 100
	cfg, err := ParseConfig("t.yaml", []byte("data_dir: "+filepath.Join(t.TempDir(), "data")+
		"\nchannel: \"#d\"\nlisten: 127.0.0.1:0\npeople:\n  - name: dave\n    emails: [d@x]\nroles: {release_heads: [dave]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := distributor.GenerateKey()
	sec := secrets{APIToken: "api", FleetToken: "fleet", SigningKey: key}
	chat := &console.Adapter{In: bytes.NewReader(nil), Out: io.Discard, Channel: "#d"}
	s, err := openServer(cfg, sec, chat, clockwork.NewRealClock(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	base := "http://" + s.Addr()

	start := time.Now()
	var g errgroup.Group
	g.SetLimit(16)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	for i := 0; i < racks*perRack; i++ {
		g.Go(func() error {
			host, rack := fmt.Sprintf("h%05d", i), fmt.Sprintf("r%03d", i/perRack)
			active := "v1"
			if i%3 == 0 {
				active = "v2"
			}
			b, _ := json.Marshal(fleet.EnrollRequest{Instance: "i-" + host, Rack: rack, DC: "dc1", Active: active, BTAddr: "127.0.0.1:6881"})
			req, _ := http.NewRequest("POST", base+"/v1/agents/"+host+"/enroll", bytes.NewReader(b))
			req.Header.Set("Authorization", "Bearer fleet")
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("enrol %s: %s", host, resp.Status)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("enrolled %d hosts in %s", racks*perRack, time.Since(start).Round(time.Millisecond))

	get := func(path string) ([]byte, time.Duration) {
		t0 := time.Now()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s %s", path, resp.Status, b)
		}
		return b, time.Since(t0)
	}
	b, took := get("/api/snapshot")
	var snap dashboard.Snapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot of 10k hosts: %d bytes in %s (race detector on)", len(b), took.Round(time.Millisecond))
	if len(snap.Racks) != racks {
		t.Fatalf("%d racks in the snapshot, want %d", len(snap.Racks), racks)
	}
	if snap.Racks[7].Hosts != perRack || snap.Racks[0].Active["v2"] != 34 || len(snap.Hosts) != 0 {
		t.Fatalf("racks: %d, rack 7 %+v, rack 0 %+v, hosts %d", len(snap.Racks), snap.Racks[7], snap.Racks[0], len(snap.Hosts))
	}
	if len(b) > 64<<10 {
		t.Errorf("the snapshot of 10k hosts is %d bytes; it should be per rack and small", len(b))
	}
	b, _ = get("/api/snapshot?rack=r042")
	json.Unmarshal(b, &snap)
	if len(snap.Hosts) != perRack || snap.Hosts[0].Name != "h04200" || snap.Rack != "r042" {
		t.Fatalf("drill-down: %d hosts, first %+v", len(snap.Hosts), snap.Hosts[0])
	}

	br := browsertest.New(t)
	if err := br.Do(30*time.Second, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	br.WaitJS("100 racks", `document.querySelectorAll(".rack").length === 100 &&
		document.querySelector('.rack[data-rack="r000"] .line[data-active]').dataset.active === "v1×66 v2×34"`, 30*time.Second)
	if err := br.Do(10*time.Second, chromedp.Click(`button[data-rack="r042"]`)); err != nil {
		t.Fatal(err)
	}
	br.WaitJS("rack r042's 100 hosts", `document.querySelectorAll("#hosts tbody tr").length === 100 &&
		document.querySelector('#hosts tr[data-host="h04200"]').dataset.active === "v2"`, 30*time.Second)
	br.Screenshot("10k-hosts")
}
