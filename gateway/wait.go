package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// preferWait reads the wait preference of RFC 7240 from the Prefer
// headers: how long the caller will wait for the result, at most MaxWait
// (a larger value is clamped), and the Preference-Applied value that says
// so. A malformed or absent preference is ignored, as the RFC asks: 0 and
// "". Other preferences, respond-async among them, change nothing: the
// answer is asynchronous whenever the wait runs out.
func preferWait(values []string) (time.Duration, string) {
	var wait time.Duration
	for _, v := range values {
		for _, pref := range strings.Split(v, ",") {
			name, val, ok := strings.Cut(strings.TrimSpace(pref), "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(name), "wait") {
				continue
			}
			val = strings.Trim(strings.TrimSpace(val), `"`)
			if i := strings.IndexByte(val, ';'); i >= 0 { // parameters of the preference
				val = strings.TrimSpace(val[:i])
			}
			n, err := strconv.ParseUint(val, 10, 32)
			if err != nil {
				continue
			}
			wait = min(time.Duration(n)*time.Second, MaxWait)
		}
	}
	if wait <= 0 {
		return 0, ""
	}
	return wait, formatWait(wait)
}

// waiters hands each result to the requests waiting for it. It keeps one
// subscription per source, on <prefix>.results.<source>.*, made at the
// source's first wait and kept for the life of the connection, and a map
// from a result's subject to the requests waiting on it. A subscription per
// request cost a SUB and an UNSUB at the server and, in nats.go, a
// 64k-slot channel (512 KiB) allocated and cleared per request: that was
// most of a waiting POST's CPU and of its garbage. It is safe for
// concurrent use.
type waiters struct {
	nc    *nats.Conn
	names wire.Names

	mu   sync.Mutex
	subs map[string]*nats.Subscription // by source
	byID map[string][]*waiter          // by result subject
}

// waiter is one request waiting for the result on subject.
type waiter struct {
	ws      *waiters
	subject string
	// ch gets the result: buffered, so delivery never blocks.
	ch chan wire.Result
}

func newWaiters(nc *nats.Conn, names wire.Names) *waiters {
	return &waiters{nc: nc, names: names, subs: map[string]*nats.Subscription{}, byID: map[string][]*waiter{}}
}

// add registers a wait for the result of source's job id. Call it before
// the job is published: the source's subscription is then sent to the
// server before the job, on the same connection, so that a result
// published at once is not missed. stop ends the wait.
func (ws *waiters) add(source, id string) (*waiter, error) {
	w := &waiter{ws: ws, subject: ws.names.Result(source, id), ch: make(chan wire.Result, 1)}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if sub := ws.subs[source]; sub == nil || !sub.IsValid() {
		sub, err := ws.nc.Subscribe(ws.names.Result(source, "*"), ws.deliver)
		if err != nil {
			return nil, fmt.Errorf("gateway: subscribe to the results of %s: %w", source, err)
		}
		ws.subs[source] = sub
	}
	ws.byID[w.subject] = append(ws.byID[w.subject], w)
	return w, nil
}

// stop ends the wait: a result arriving later is not kept for it.
func (w *waiter) stop() {
	ws := w.ws
	ws.mu.Lock()
	defer ws.mu.Unlock()
	list := ws.byID[w.subject]
	if i := slices.Index(list, w); i >= 0 {
		list = slices.Delete(list, i, i+1)
	}
	if len(list) == 0 {
		delete(ws.byID, w.subject)
		return
	}
	ws.byID[w.subject] = list
}

// deliver hands a result to every request waiting for it; it runs on the
// subscription's goroutine, so it never blocks.
func (ws *waiters) deliver(msg *nats.Msg) {
	ws.mu.Lock()
	list := slices.Clone(ws.byID[msg.Subject])
	ws.mu.Unlock()
	if len(list) == 0 {
		return
	}
	var res wire.Result
	if json.Unmarshal(msg.Data, &res) != nil || res.JobID == "" {
		return
	}
	for _, w := range list {
		select {
		case w.ch <- res:
		default: // it has its result already
		}
	}
}

// waitResult waits up to d for the job's result, or until the caller goes
// away.
func (s *Server) waitResult(r *http.Request, w *waiter, d time.Duration) (wire.Result, bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case res := <-w.ch:
		s.metrics.waits.WithLabelValues(waitResult).Inc()
		return res, true
	case <-t.C:
		s.metrics.waits.WithLabelValues(waitTimeout).Inc()
	case <-r.Context().Done():
		s.metrics.waits.WithLabelValues(waitCanceled).Inc()
	}
	return wire.Result{}, false
}
