package reliability_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/service"
)

// partitionFor is how long the partitioned worker is cut off from NATS in
// TestPartition: twice its lease and ack wait (2 s), so that its jobs are
// redelivered and its keys taken over meanwhile, and shorter than a
// KeyValue request's timeout (5 s), so that what it asked for just before
// the cut (a claim, a rate-limit permit) arrives when the partition heals,
// a lease later than the worker thinks: it must not act on it.
const partitionFor = 4 * time.Second

// TestPartition cuts one of two workers off from NATS while it still
// reaches Graph: its NATS connection goes through a TCP proxy that stops
// forwarding (the connection stays open, as in a network partition, and
// what was sent arrives when the partition heals) for longer than its
// lease. Its
// jobs are redelivered to the other worker, which takes their keys over
// once the leases have lapsed. The cut-off worker must not call Graph for
// a key whose lease it can no longer prove: no call from it starts later
// than a lease after the cut, and on no device does it call after the
// other worker did. The taker may call once more, and its result says
// uncertain where the first call may have acted. Nothing is lost.
func TestPartition(t *testing.T) {
	t.Parallel()
	ns := devservertest.Start(t)
	r := newRig(t, graphsim.Config{Latency: 100 * time.Millisecond}, ns.URL(), 1)
	p := startProxy(t, ns.URL())
	calls := &callLog{}

	// The shared rate limit keeps most of each worker's jobs waiting for
	// a permit with their key held: the cut catches them there, and the
	// permit may come only after their lease has lapsed.
	// Leases and ack waits of 2 s, half the partition: the other worker
	// has taken the keys over and called well before it heals.
	rate := ratelimit.Rate{N: 20, Per: time.Second}
	config := func(name string) service.Config {
		cfg := r.config(name)
		cfg.Rate = rate
		cfg.Lease, cfg.AckWait = 2*time.Second, 2*time.Second
		cfg.HTTPClient = calls.client(r.gs.Client(), name)
		return cfg
	}
	cut := config("partitioned")
	cut.NATS.URL = p.URL()
	r.startWorker(cut)
	other := config("connected")
	r.startWorker(other)

	jobs, want := batch("partition", 0, 200, 10)
	r.submit(t.Context(), "batch", jobs)
	r.waitCalls(t.Context(), 40)

	cutAt := p.Partition()
	<-time.After(partitionFor) // the fault itself: the worker is cut off
	healAt := p.Heal()
	t.Logf("cut the worker off from NATS for %s, after %d Graph calls", healAt.Sub(cutAt).Round(time.Millisecond), len(r.gs.Calls()))
	rep := r.settle(want, 2*time.Minute)

	// The last lease the worker could prove was written before the cut;
	// a write on its way through the proxy then may still land, hence the
	// slack. A key the other worker took from it was not its own after
	// that, unless it took the key back.
	const slack = 250 * time.Millisecond
	proven := cutAt.Add(cut.Lease + slack)
	lost := r.takenOver(other.Name, cut.Name)
	for key := range r.takenOver(cut.Name, other.Name) {
		delete(lost, key)
	}
	devices := map[string]string{} // by lower-case device: its key
	for _, j := range jobs {
		key := j.IdempotencyKey
		if key == "" {
			key = j.ID
		}
		devices[strings.ToLower(j.ManagedDeviceID)] = key
	}
	sent := calls.all()
	during, late, byWorker := 0, 0, map[string]int{}
	for _, c := range sent {
		byWorker[c.worker]++
		if c.worker != cut.Name || !c.at.After(proven) {
			continue
		}
		if c.at.Before(healAt) {
			during++
			t.Errorf("the partitioned worker called Graph for device %s %s after the cut, later than its lease (%s) allows", c.device, c.at.Sub(cutAt).Round(time.Millisecond), cut.Lease)
			continue
		}
		if lost[devices[c.device]] {
			late++
			t.Errorf("the partitioned worker called Graph for device %s %s after the partition healed, on a key the other worker had taken over", c.device, c.at.Sub(healAt).Round(time.Millisecond))
		}
	}
	for _, v := range interleaved(sent, cut.Name) {
		t.Error(v)
	}
	t.Logf("Graph calls sent: %v; keys taken from the partitioned worker: %d; its calls on them after its lease: %d during the partition, %d after; uncertain results: %d",
		byWorker, len(lost), during, late, rep.Uncertain)
	if len(lost) == 0 {
		t.Error("the other worker took no key over: the partition tested nothing")
	}
}

// takenOver returns the idempotency keys (without their tenant) that the
// worker named by took over from the worker named from, as its log says.
func (r *rig) takenOver(by, from string) map[string]bool {
	r.t.Helper()
	keys := map[string]bool{}
	for _, w := range r.workers {
		if w.name != by {
			continue
		}
		for line := range strings.Lines(w.logs.String()) {
			var e struct {
				Message       string `json:"message"`
				Key           string `json:"key"`
				PreviousOwner string `json:"previous_owner"`
			}
			if json.Unmarshal([]byte(line), &e) != nil {
				continue
			}
			if strings.Contains(e.Message, "took over a key") && e.PreviousOwner == from {
				_, key, _ := strings.Cut(e.Key, "/")
				keys[key] = true
			}
		}
	}
	return keys
}

// interleaved lists the devices on which worker called Graph after another
// worker had: a key it no longer held.
func interleaved(calls []sentCall, worker string) []string {
	seenOther := map[string]time.Time{}
	var out []string
	for _, c := range calls {
		switch {
		case c.worker != worker:
			if _, ok := seenOther[c.device]; !ok {
				seenOther[c.device] = c.at
			}
		case !seenOther[c.device].IsZero():
			out = append(out, fmt.Sprintf("%s called Graph for device %s %s after another worker took its key over", worker, c.device, c.at.Sub(seenOther[c.device]).Round(time.Millisecond)))
		}
	}
	return out
}

// sentCall is a Graph call as its worker sent it.
type sentCall struct {
	worker, device string
	at             time.Time
}

// callLog records the recoverPasscode calls workers send, in the order
// they start, so that a test knows who called (Graph's own log does not).
type callLog struct {
	mu    sync.Mutex
	calls []sentCall
}

// client wraps base so that every POST through it is recorded as worker's.
func (l *callLog) client(base *http.Client, worker string) *http.Client {
	c := *base
	c.Transport = recordingTransport{next: base.Transport, log: l, worker: worker}
	return &c
}

func (l *callLog) all() []sentCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

type recordingTransport struct {
	next   http.RoundTripper
	log    *callLog
	worker string
}

// RoundTrip records a recoverPasscode call before sending it on.
func (t recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/recoverPasscode") {
		parts := strings.Split(req.URL.Path, "/")
		device := strings.ToLower(parts[len(parts)-2])
		t.log.mu.Lock()
		t.log.calls = append(t.log.calls, sentCall{worker: t.worker, device: device, at: time.Now()})
		t.log.mu.Unlock()
	}
	return t.next.RoundTrip(req)
}

// proxy forwards TCP connections to a NATS server until Partition, and
// again after Heal. While partitioned it accepts and reads but forwards
// nothing: the bytes wait, as TCP retransmits them across a partition, and
// flow on when it heals. Connections stay open throughout, so the client
// sees no error, only silence.
type proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	healed chan struct{} // closed while forwarding; replaced by Partition
	conns  []net.Conn
}

// startProxy listens on loopback for connections to the server at url,
// until the test ends.
func startProxy(t *testing.T, url string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: strings.TrimPrefix(url, "nats://"), healed: make(chan struct{})}
	close(p.healed)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// URL is the nats:// URL a client connects to through the proxy.
func (p *proxy) URL() string { return "nats://" + p.ln.Addr().String() }

// Partition stops forwarding and returns when it did.
func (p *proxy) Partition() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.healed = make(chan struct{})
	return time.Now()
}

// Heal forwards again, what waited first, and returns when it did.
func (p *proxy) Heal() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.healed)
	return time.Now()
}

// gate blocks while the proxy is partitioned.
func (p *proxy) gate() {
	p.mu.Lock()
	healed := p.healed
	p.mu.Unlock()
	<-healed
}

func (p *proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.serve(client)
	}
}

// serve dials the server for client, once the proxy forwards, and copies
// both ways.
func (p *proxy) serve(client net.Conn) {
	p.gate()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, client, server)
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { p.pipe(server, client); done <- struct{}{} }()
	go func() { p.pipe(client, server); done <- struct{}{} }()
	<-done
	client.Close()
	server.Close()
}

// pipe copies src to dst, holding each chunk at the gate.
func (p *proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.gate()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF, a reset or a closed connection alike
		}
	}
}

// close stops accepting, heals (so no pipe stays blocked) and closes every
// connection.
func (p *proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	select {
	case <-p.healed:
	default:
		close(p.healed)
	}
	conns := p.conns
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}
