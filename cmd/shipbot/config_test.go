package main

import (
	"gopkg.in/yaml.v3"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigLoads(t *testing.T) {
	c, err := LoadConfig("../../configs/shipbot.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8080" || *c.ReminderInterval != 10*time.Minute || c.MaxArtifactSize != 4<<30 || len(c.People) != 3 {
		t.Errorf("example config: %+v", c)
	}
	d, err := c.Directory()
	if err != nil {
		t.Fatal(err)
	}
	if p := d.ByEmail("alice@users.noreply.github.com"); p == nil || p.Name != "alice" {
		t.Errorf("email mapping: %v", p)
	}
}

func TestExampleIRCConfigLoads(t *testing.T) {
	c, err := LoadConfig("../../configs/shipbot-irc.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Chat != "irc" || c.IRC.Server != "irc.example.com" || c.IRC.SASL != "plain" || c.IRC.Burst != 4 {
		t.Errorf("irc example: %+v", c.IRC)
	}
	_, err = ParseConfig("x.yaml", []byte(strings.Replace(mustRead(t, "../../configs/shipbot-irc.yaml"), "server: irc.example.com", "sevrer: irc.example.com", 1)))
	if err == nil || !strings.Contains(err.Error(), `unknown key "sevrer"`) {
		t.Errorf("misspelt irc key: %v", err)
	}
	_, err = ParseConfig("x.yaml", []byte(strings.Replace(mustRead(t, "../../configs/shipbot-irc.yaml"), `channel: "#deploy"`, `channel: "deploy"`, 1)))
	if err == nil || !strings.Contains(err.Error(), "starts with #") {
		t.Errorf("irc channel without #: %v", err)
	}
}

func TestExampleSlackConfigAndManifest(t *testing.T) {
	c, err := LoadConfig("../../configs/shipbot-slack.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Chat != "slack" || c.Slack.ChannelID != "C0123456789" || c.Slack.SlashCommand != "/ship" {
		t.Errorf("slack example: %+v", c.Slack)
	}
	// The app manifest a user pastes into Slack: Socket Mode, the slash command the
	// config expects, interactivity for the Ready button, the scopes the adapter uses.
	var m struct {
		Features struct {
			SlashCommands []struct{ Command string } `yaml:"slash_commands"`
		} `yaml:"features"`
		OAuth struct {
			Scopes struct{ Bot []string } `yaml:"scopes"`
		} `yaml:"oauth_config"`
		Settings struct {
			SocketMode    bool `yaml:"socket_mode_enabled"`
			Interactivity struct {
				Enabled bool `yaml:"is_enabled"`
			} `yaml:"interactivity"`
			Events struct {
				Bot []string `yaml:"bot_events"`
			} `yaml:"event_subscriptions"`
		} `yaml:"settings"`
	}
	if err := yaml.Unmarshal([]byte(mustRead(t, "../../configs/slack-app-manifest.yaml")), &m); err != nil {
		t.Fatal(err)
	}
	scopes := strings.Join(m.OAuth.Scopes.Bot, " ")
	if !m.Settings.SocketMode || !m.Settings.Interactivity.Enabled || len(m.Features.SlashCommands) != 1 ||
		m.Features.SlashCommands[0].Command != c.Slack.SlashCommand || !strings.Contains(scopes, "chat:write") ||
		!strings.Contains(scopes, "commands") || !strings.Contains(strings.Join(m.Settings.Events.Bot, " "), "message.channels") {
		t.Errorf("app manifest: %+v", m)
	}
}

func mustRead(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestConfigErrors(t *testing.T) {
	base := "data_dir: /tmp/x\nchannel: \"#d\"\npeople:\n  - name: alice\n    emails: [a@x]\nroles:\n  release_heads: [alice]\n"
	cases := []struct {
		name, yaml, want string
	}{
		{"unknown top key", base + "listn: 1.2.3.4:5\n", `line 8: unknown key "listn"`},
		{"unknown nested key", strings.Replace(base, "emails: [a@x]", "emails: [a@x]\n    slak: U1", 1), `unknown key "slak"`},
		{"bad duration", base + "reminder_interval: soon\n", "line 8"},
		{"short duration", base + "reminder_interval: 10ms\n", "reminder_interval: 10ms is too short"},
		{"bad size", base + "max_artifact_size: 4XB\n", `unknown unit "XB"`},
		{"bad listen", base + "listen: localhost\n", "listen:"},
		{"no data dir", strings.Replace(base, "data_dir: /tmp/x\n", "", 1), "data_dir: required"},
		{"no heads", strings.Replace(base, "release_heads: [alice]", "release_heads: []", 1), "roles.release_heads"},
		{"unknown head", strings.Replace(base, "release_heads: [alice]", "release_heads: [zed]", 1), `"zed" is not in people`},
		{"bad email", strings.Replace(base, "[a@x]", "[alice]", 1), "people[0].emails[0]"},
		{"bad name", strings.Replace(base, "name: alice", "name: Alice Smith", 1), "people[0].name"},
		{"bad slack", strings.Replace(base, "emails: [a@x]", "emails: [a@x]\n    slack: alice", 1), "people[0].slack"},
		{"bad mask", strings.Replace(base, "emails: [a@x]", "emails: [a@x]\n    irc: {masks: [alice]}", 1), "people[0].irc.masks[0]"},
		{"any-host mask", strings.Replace(base, "emails: [a@x]", "emails: [a@x]\n    irc: {masks: [\"alice!*@*\"]}", 1), "matches any host"},
		{"bad chat", base + "chat: telegram\n", `chat: "telegram"`},
		{"slack without section", base + "chat: slack\n", "the slack: section is missing"},
		{"slack bad channel", base + "chat: slack\nslack: {channel_id: \"#deploy\"}\n", "slack.channel_id"},
		{"slack bad command", base + "chat: slack\nslack: {channel_id: C012, slash_command: ship}\n", "must start with /"},
		{"bad log level", base + "log: {level: loud}\n", "log.level"},
		{"empty", "", "empty"},
		{"gate source", base + "rollout:\n  gates: [{name: x, source: graphite}]\n", `rollout.gates[0]: source: "graphite"`},
		{"agent gate with a query", base + "rollout:\n  gates: [{name: x, errors: a, total: b, max_rate: 0.1, query: up}]\n", "query, samples, unit and max_value are for source: prometheus"},
		{"prometheus gate without url", base + "rollout:\n  gates: [{name: x, source: prometheus, query: up, max_value: 1}]\n", "needs rollout.prometheus.url"},
		{"prometheus gate, bad template", base + "rollout:\n  prometheus: {url: \"http://p:9090\"}\n  gates: [{name: x, source: prometheus, query: '{{.Versoin}}', max_value: 1}]\n", "the template knows .Version"},
		{"prometheus min_samples alone", base + "rollout:\n  prometheus: {url: \"http://p:9090\"}\n  gates: [{name: x, source: prometheus, query: up, max_value: 1, min_samples: 5}]\n", "min_samples needs a samples query"},
		{"prometheus bad unit", base + "rollout:\n  prometheus: {url: \"http://p:9090\"}\n  gates: [{name: x, source: prometheus, query: up, max_value: 1, unit: furlongs}]\n", `unit: "furlongs"`},
		{"gate without a cap", base + "rollout:\n  gates: [{name: x, errors: a, total: b}]\n", "set max_ratio"},
		{"bad prometheus url", base + "rollout:\n  prometheus: {url: \"p:9090\"}\n", "rollout.prometheus.url"},
		{"wrong type", base + "people: 3\n", "line"},
	}
	for _, c := range cases {
		_, err := ParseConfig("test.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "test.yaml: ") {
			t.Errorf("%s: err = %v, want it to start with the file name and mention %q", c.name, err, c.want)
		}
	}
	c, err := ParseConfig("ok.yaml", []byte(base))
	if err != nil || *c.ReminderInterval != 10*time.Minute {
		t.Errorf("base config: %v", err)
	}
	c, err = ParseConfig("ok.yaml", []byte(base+"reminder_interval: 0s\n"))
	if err != nil || *c.ReminderInterval != 0 {
		t.Errorf("reminders off: %v", err)
	}
}

func TestCheckConfigCommand(t *testing.T) {
	var out strings.Builder
	if err := cmdCheckConfig([]string{"../../configs/shipbot.yaml"}, &out); err != nil || !strings.Contains(out.String(), "ok") {
		t.Errorf("check-config of the example: %v %q", err, out.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("chanel: x\n"), 0o644)
	err := cmdCheckConfig([]string{bad}, &out)
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), `"chanel"`) {
		t.Errorf("check-config of a bad file: %v", err)
	}
}

func TestKeygenCommand(t *testing.T) {
	dir := t.TempDir()
	var out strings.Builder
	if err := cmdKeygen([]string{"--dir", dir}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "public key for shipagent's config: ") {
		t.Errorf("keygen said %q", out.String())
	}
	if err := cmdKeygen([]string{"--dir", dir}, &out, &out); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("second keygen over the same key: %v", err)
	}
}
