package irc_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/bot/chattest"
)

// BenchmarkReadyAck measures, through a real ngircd and the real shipbot binary, the
// time from a person's !ready to the bot's acknowledgement, over 100 messages sent one
// after another. Run it with make bench-irc. The bot's send pace is lifted to 1000
// lines/s so the figure is shipbot's and the server's; at the default 1 line/s (burst
// 4), a burst of commands waits for the pace.
func BenchmarkReadyAck(b *testing.B) {
	bin := chattest.Build(b, "./cmd/shipbot")
	n := startNgircd(b)
	data := b.TempDir()
	sb := chattest.StartShipbot(b, bin, ircConfigPaced(data, n.port, 1000), data)

	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", n.port))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	fmt.Fprintf(conn, "NICK alice\r\nUSER alice 0 * :alice\r\nJOIN %s\r\n", channel)
	readUntil := func(sub string) string {
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				b.Fatalf("waiting for %q: %v", sub, err)
			}
			if strings.HasPrefix(l, "PING") {
				fmt.Fprintf(conn, "PONG %s\r\n", strings.TrimSpace(l[5:]))
			}
			if strings.Contains(l, sub) {
				return l
			}
		}
	}
	readUntil(" 366 ") // joined
	// Wait for the bot to be in the channel.
	for i := 0; ; i++ {
		fmt.Fprintf(conn, "NAMES %s\r\n", channel)
		if l := readUntil(" 353 "); strings.Contains(l, "shipbot") {
			break
		}
		if i == 100 {
			b.Fatal("the bot never joined")
		}
		time.Sleep(100 * time.Millisecond)
	}
	repo := chattest.Repo(b)
	if out, err := sb.CLI(context.Background(), "release", "create", "--version", "v2", "--artifact", artifact(b),
		"--commits", "v1..v2", "--repo", repo); err != nil {
		b.Fatalf("release create: %v %s", err, out)
	}
	readUntil("release v2")

	const msgs = 100
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < msgs; i++ {
		cmd := "!ready"
		if i%2 == 1 {
			cmd = "!unready"
		}
		t0 := time.Now()
		fmt.Fprintf(conn, "PRIVMSG %s :%s\r\n", channel, cmd)
		readUntil(":shipbot!")
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	fmt.Printf("!ready -> acknowledgement through ngircd, %d messages: p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
		msgs, float64(p50.Microseconds())/1000, float64(p99.Microseconds())/1000, float64(lat[len(lat)-1].Microseconds())/1000)
}
