package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/shipbot/shipbot/distributor/fleet"
)

func cmdFleet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: shipbot fleet hosts | shipbot fleet set [--hosts a,b] [--stage r1,r2] [--add-stage r3] [--active r2]")
	}
	fs := flag.NewFlagSet("fleet "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", "shipbot's URL (default $SHIPBOT_URL, else http://"+defaultListen+")")
	hosts := fs.String("hosts", "", "comma-separated hosts (default: every enrolled host)")
	stage := fs.String("stage", "", "releases the hosts hold (replaces the list)")
	addStage := fs.String("add-stage", "", "releases to add to the hosts' list")
	active := fs.String("active", "", "release the hosts run")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	c, err := apiClient(*server)
	if err != nil {
		return err
	}
	do := func(method, path string, in, out any) error {
		var body io.Reader
		if in != nil {
			b, _ := json.Marshal(in)
			body = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, body)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+c.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			var e struct{ Error string }
			json.NewDecoder(resp.Body).Decode(&e)
			if resp.StatusCode == http.StatusNotFound && e.Error == "" {
				return errors.New("this shipbot has no fleet API: start it with SHIPBOT_FLEET_TOKEN and SHIPBOT_SIGNING_KEY_FILE")
			}
			return fmt.Errorf("shipbot refused (%s): %s", resp.Status, e.Error)
		}
		return json.NewDecoder(resp.Body).Decode(out)
	}
	split := func(s string) []string {
		if s == "" {
			return nil
		}
		return strings.Split(s, ",")
	}
	switch args[0] {
	case "hosts":
		var hs []fleet.HostState
		if err := do("GET", "/v1/fleet/hosts", nil, &hs); err != nil {
			return err
		}
		for _, h := range hs {
			var staged []string
			for r, st := range h.Staged {
				mark := fmt.Sprintf("%d%%", pct(st.Bytes, st.Total))
				if st.Done {
					mark = "ok"
				}
				if st.Error != "" {
					mark = "error"
				}
				staged = append(staged, r+":"+mark)
			}
			sort.Strings(staged)
			state := "live"
			if h.Stale {
				state = "STALE"
			}
			health := "-"
			if h.Health != nil {
				health = map[bool]string{true: "healthy", false: "UNHEALTHY"}[h.Health.OK]
			}
			fmt.Fprintf(stdout, "%-12s %-6s %-6s %-5s active=%-8s %-9s staged=%s\n", h.Host.Name, h.Host.Rack, h.Host.DC, state,
				orDash(h.Active), health, strings.Join(staged, ","))
		}
		return nil
	case "set":
		ch := fleet.DesiredChange{Hosts: split(*hosts), Stage: split(*stage), AddStage: split(*addStage)}
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "active" {
				ch.Active = active
			}
		})
		var out map[string]uint64
		if err := do("PUT", "/v1/fleet/desired", ch, &out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "desired state generation %d\n", out["generation"])
		return nil
	}
	return fmt.Errorf("unknown fleet command %q; use hosts or set", args[0])
}

func pct(a, b int64) int64 {
	if b == 0 {
		return 0
	}
	return 100 * a / b
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
