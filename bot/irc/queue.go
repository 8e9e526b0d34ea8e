package irc

import (
	"context"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/shipbot/shipbot/bot"
)

// queue holds outgoing lines by priority and paces them. Urgent lines (failures,
// rollbacks) always go first, then normal ones; progress lines go last, and all the
// progress waiting at send time goes out batched in one line, a newer post with the
// same key replacing an older one. It lives across disconnects.
type queue struct {
	mu       sync.Mutex
	urgent   []string
	normal   []string
	progress []progressItem
	wakeC    chan struct{}
	lim      *rate.Limiter
	maxBatch int
}

type progressItem struct {
	key  string
	text string
}

func newQueue(perSecond float64, burst int) *queue {
	return &queue{wakeC: make(chan struct{}, 1), lim: rate.NewLimiter(rate.Limit(perSecond), burst), maxBatch: 400}
}

func (q *queue) push(p bot.Priority, key string, lines []string) {
	if len(lines) == 0 {
		return
	}
	q.mu.Lock()
	switch p {
	case bot.PriorityUrgent:
		q.urgent = append(q.urgent, lines...)
	case bot.PriorityProgress:
		text := strings.Join(lines, " ")
		replaced := false
		if key != "" {
			for i := range q.progress {
				if q.progress[i].key == key {
					q.progress[i].text, replaced = text, true
				}
			}
		}
		if !replaced {
			q.progress = append(q.progress, progressItem{key, text})
		}
	default:
		q.normal = append(q.normal, lines...)
	}
	q.mu.Unlock()
	q.wake()
}

func (q *queue) wake() {
	select {
	case q.wakeC <- struct{}{}:
	default:
	}
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.urgent) + len(q.normal) + len(q.progress)
}

// pop takes the most important line, batching progress.
func (q *queue) pop() (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case len(q.urgent) > 0:
		l := q.urgent[0]
		q.urgent = q.urgent[1:]
		return l, true
	case len(q.normal) > 0:
		l := q.normal[0]
		q.normal = q.normal[1:]
		return l, true
	case len(q.progress) > 0:
		var parts []string
		n := 0
		for len(q.progress) > 0 && (n == 0 || n+3+len(q.progress[0].text) <= q.maxBatch) {
			parts = append(parts, q.progress[0].text)
			n += 3 + len(q.progress[0].text)
			q.progress = q.progress[1:]
		}
		return bot.Truncate(strings.Join(parts, " | "), q.maxBatch), true
	}
	return "", false
}

// next blocks until a line may be sent: something is queued, connected() is true,
// and the pace allows. It returns false when ctx is done.
func (q *queue) next(ctx context.Context, connected func() bool) (string, bool) {
	for {
		if connected() && q.len() > 0 {
			if err := q.lim.Wait(ctx); err != nil {
				return "", false
			}
			// Pick after the wait, so a line that became urgent meanwhile goes first.
			if connected() {
				if l, ok := q.pop(); ok {
					return l, true
				}
			}
			continue
		}
		select {
		case <-ctx.Done():
			return "", false
		case <-q.wakeC:
		case <-time.After(250 * time.Millisecond): // connection state has no channel to wait on
		}
	}
}
