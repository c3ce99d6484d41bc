package deploy

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/queue"
)

// denialWait bounds the wait for a permission violation. A violation comes
// back within milliseconds; this only stops a broken test from hanging.
const denialWait = 5 * time.Second

// sentinel is a subject no user may publish to: its violation marks the end
// of everything a connection did before it.
const sentinel = "deploy.test.sentinel"

// peer is one authenticated client connection. The server reports each
// permission violation asynchronously; the connection's error handler passes
// them, in order, to denials.
type peer struct {
	user    string
	nc      *nats.Conn
	js      jetstream.JetStream
	denials chan string
}

// inboxPrefix is the inbox prefix accounts.conf lets user read, the
// NATS_INBOX_PREFIX that user's clients set.
func inboxPrefix(user string) string { return "_INBOX." + user }

// connect connects as user with that user's inbox prefix, as a client
// configured by the deploy files does.
func connect(t *testing.T, url, user, password string) *peer {
	t.Helper()
	return connectWith(t, queue.Conn{URL: url, User: user, Password: password, InboxPrefix: inboxPrefix(user)})
}

// connectWith connects with the worker's own connection settings (package
// queue), without retrying a failed first connect, and collects the
// server's refusals.
func connectWith(t *testing.T, c queue.Conn) *peer {
	t.Helper()
	p := &peer{user: c.User, denials: make(chan string, 256)}
	opts, err := c.Options("deploy-test-"+c.User, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(c.URL, append(opts,
		nats.RetryOnFailedConnect(false),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if !errors.Is(err, nats.ErrPermissionViolation) {
				return
			}
			select {
			case p.denials <- err.Error():
			default:
			}
		}))...)
	if err != nil {
		t.Fatalf("connect as %s: %v", c.User, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	p.nc, p.js = nc, js
	return p
}

// violationText finds the kind ("Publish" or "Subscription") and the subject
// in the text nats-server sends for a permission violation.
var violationText = regexp.MustCompile(`(?i)for (publish|subscription) to "([^"]*)"`)

// refuses reports whether the violation text got is the refusal of kind
// ("publish" or "subscription") on a subject that matches pattern, where a
// "*" token of the pattern stands for any one token (a generated consumer
// name).
func refuses(got, kind, pattern string) bool {
	m := violationText.FindStringSubmatch(got)
	if m == nil || !strings.EqualFold(m[1], kind) {
		return false
	}
	want, have := strings.Split(pattern, "."), strings.Split(m[2], ".")
	if len(want) != len(have) {
		return false
	}
	for i := range want {
		if want[i] != "*" && want[i] != have[i] {
			return false
		}
	}
	return true
}

// expectDenied waits until the server refuses kind on a subject matching
// pattern for p.
func (p *peer) expectDenied(t *testing.T, kind, pattern string) {
	t.Helper()
	timeout := time.After(denialWait)
	for {
		select {
		case got := <-p.denials:
			if refuses(got, kind, pattern) {
				return
			}
		case <-timeout:
			t.Fatalf("%s: no refusal of %s to %q within %s", p.user, kind, pattern, denialWait)
		}
	}
}

// expectNoDenials proves that nothing p did so far was refused: the server
// answers in order, so once the violation for the sentinel arrives every
// earlier one has arrived too.
func (p *peer) expectNoDenials(t *testing.T) {
	t.Helper()
	if err := p.nc.Publish(sentinel, nil); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(denialWait)
	for {
		select {
		case got := <-p.denials:
			if refuses(got, "publish", sentinel) {
				return
			}
			t.Errorf("%s: refused %s", p.user, got)
		case <-timeout:
			t.Fatalf("%s: the sentinel publish was not refused within %s", p.user, denialWait)
		}
	}
}

// denial is one thing a user must not be able to do. do may block until ctx
// ends (a request that the server refuses gets no reply).
type denial struct {
	name    string
	who     *peer
	do      func(ctx context.Context, p *peer) error
	kind    string // "publish" or "subscription"
	subject string // a "*" token matches any one token
}

// run performs d.do and waits for the server's refusal of d.subject.
func (d denial) run(ctx context.Context, t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.do(ctx, d.who) }()
	d.who.expectDenied(t, d.kind, d.subject)
	cancel()
	if err := <-done; err == nil && d.kind == "publish" && isRequest(d.subject) {
		t.Errorf("%s: the refused request %s succeeded", d.who.user, d.subject)
	}
}

// isRequest reports whether subject is a JetStream API request, which must
// fail (rather than merely be dropped) when it is refused.
func isRequest(subject string) bool { return strings.HasPrefix(subject, "$JS.API.") }

// publish is a denial action: a core publish, flushed so the server sees it.
func publish(subject string) func(context.Context, *peer) error {
	return func(ctx context.Context, p *peer) error {
		if err := p.nc.Publish(subject, []byte(`{}`)); err != nil {
			return err
		}
		return p.nc.FlushWithContext(ctx)
	}
}

// subscribe is a denial action: a core subscription.
func subscribe(subject string) func(context.Context, *peer) error {
	return func(ctx context.Context, p *peer) error {
		sub, err := p.nc.SubscribeSync(subject)
		if err != nil {
			return err
		}
		defer func() { _ = sub.Unsubscribe() }()
		return p.nc.FlushWithContext(ctx)
	}
}

// readResults is a denial action: an ordered consumer over the results
// stream with the given filter subjects.
func readResults(filters ...string) func(context.Context, *peer) error {
	return func(ctx context.Context, p *peer) error {
		_, err := p.js.OrderedConsumer(ctx, resultsStream, jetstream.OrderedConsumerConfig{FilterSubjects: filters})
		return err
	}
}
