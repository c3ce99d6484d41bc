package reliability_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/reliability"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// hostile is one broken or malicious job message and how it must end.
type hostile struct {
	name string
	data []byte
	// id is the message's Nats-Msg-Id, and the job id its result must
	// carry unless derived is set.
	id     string
	device string // the device the message names, if any
	want   wire.Status
	// any accepts any status (see reliability.Expected.AnyStatus).
	any bool
	// key is the idempotency key when the job sets one.
	key string
	// derived says the result must carry the id derived from the
	// message's stream position: the job's own id is not usable.
	derived bool
}

// pathTricks are values that would change a URL's path or query if they
// reached it unescaped, or that look like a separator to a person.
var pathTricks = []string{
	"..", "../x", "a/../b", "%2F", "a%2Fb", "%2e%2e", "a?b", "a?x=1", "a#b", "a\\b", "a b",
	"a\u2215b", "a\uff0fb", "a\u2044b", "a\u29f8b", "a\u3002b", "a;b",
}

// builder numbers hostile cases and gives each its own id and device.
type builder struct {
	n     int
	cases []hostile
}

func (b *builder) next() (id, device string) {
	b.n++
	return fmt.Sprintf("hostile-%03d", b.n), testsystem.DeviceN(5000 + b.n)
}

// field adds a valid job with one JSON field set to value.
func (b *builder) field(name, key string, value any, want wire.Status) *hostile {
	id, device := b.next()
	j := map[string]any{"managedDeviceId": device}
	if key == "managedDeviceId" {
		device = fmt.Sprint(value)
	}
	j[key] = value
	data, err := json.Marshal(j)
	if err != nil {
		panic(err)
	}
	h := hostile{name: name, data: data, id: id, device: device, want: want}
	if key == "idempotencyKey" {
		h.key = fmt.Sprint(value)
	}
	b.cases = append(b.cases, h)
	return &b.cases[len(b.cases)-1]
}

// raw adds a message built by hand around the job's device.
func (b *builder) raw(name string, want wire.Status, build func(device string) string) {
	id, device := b.next()
	b.cases = append(b.cases, hostile{name: name, data: []byte(build(device)), id: id, device: device, want: want})
}

// hostileGroups are the hostile cases by kind; each kind runs on its own
// system, so a bug in one does not hide the others.
var hostileGroups = []struct {
	name  string
	build func(b *builder)
}{
	{"path tricks in identifiers", func(b *builder) {
		for _, trick := range pathTricks {
			q := fmt.Sprintf("%q", trick)
			b.field("tenantId "+q, "tenantId", testsystem.Tenant+trick, wire.Rejected)
			b.field("managedDeviceId "+q, "managedDeviceId", testsystem.Device+trick, wire.Rejected)
			b.field("userId "+q, "userId", trick, wire.Rejected)
			b.field("userId UPN "+q, "userId", "user"+trick+"@contoso.com", wire.Rejected)
			b.field("detectedAppId "+q, "detectedAppId", trick, wire.Rejected)
			// Free text: anything printable is fine, it never reaches a path.
			b.field("idempotencyKey "+q, "idempotencyKey", fmt.Sprintf("%s~%d", trick, b.n), wire.Succeeded)
			b.field("ticket "+q, "ticket", trick, wire.Succeeded)
			b.field("requestedBy "+q, "requestedBy", trick, wire.Succeeded)
		}
		// Identifiers Graph accepts that look odd.
		b.field("userId UPN with an apostrophe", "userId", "o'brien@contoso.com", wire.Succeeded)
		b.field("userId UPN with every allowed sign", "userId", "a.b-c_d!^~'e@sub.contoso.com", wire.Succeeded)
		b.field("detectedAppId with dots", "detectedAppId", "..x", wire.Succeeded)
		b.field("detectedAppId of 128 characters", "detectedAppId", strings.Repeat("a", 128), wire.Succeeded)
		b.field("detectedAppId of 129 characters", "detectedAppId", strings.Repeat("a", 129), wire.Rejected)
	}},
	{"path tricks in job ids", func(b *builder) {
		// A bad id is rejected, and the rejection answers under the id
		// derived from the message's stream position.
		for _, trick := range pathTricks {
			b.field(fmt.Sprintf("id %q", trick), "id", trick, wire.Rejected).derived = true
		}
		// A bad message id cannot be the job's id either: the id derived
		// from the stream position answers.
		for _, trick := range []string{"..", "a/../b", "a b", "%2F", "a\u2215b"} {
			_, device := b.next()
			b.cases = append(b.cases, hostile{name: fmt.Sprintf("Nats-Msg-Id %q", trick), data: []byte(`{"managedDeviceId":"` + device + `"}`),
				id: trick, device: device, want: wire.Rejected, derived: true})
		}
	}},
	{"reply subjects", func(b *builder) {
		// replyTo is a NATS subject: empty tokens, spaces and wildcards are not.
		for _, bad := range []string{"..", "../x", "a/../b", "a b", "a.*", "a.>", "a..b", ".a", "a."} {
			b.field(fmt.Sprintf("replyTo %q", bad), "replyTo", bad, wire.Rejected)
		}
		for _, ok := range []string{"%2F", "a%2Fb", "a?b", "a#b", "a\\b", "a\u2215b", "_INBOX.x"} {
			b.field(fmt.Sprintf("replyTo %q", ok), "replyTo", ok, wire.Succeeded)
		}
		// A result stored on another source's subject would be read as theirs.
		b.field("replyTo on another source's result subject", "replyTo", "recoverpasscode.results.ticketing.INC0012345", wire.Rejected)
	}},
	{"header injection and control characters", func(b *builder) {
		for _, inj := range []string{"INC1\r\nX-Injected: yes", "INC1\nX-Injected: yes", "INC1\rX", "INC1\x00", "INC1\x1b[2J", "INC1\u2028x", "INC1\u0085x", "INC1\x7f"} {
			b.field(fmt.Sprintf("ticket %q", inj), "ticket", inj, wire.Rejected)
			b.field(fmt.Sprintf("requestedBy %q", inj), "requestedBy", inj, wire.Rejected)
			b.field(fmt.Sprintf("idempotencyKey %q", inj), "idempotencyKey", inj, wire.Rejected)
		}
		b.field("ticket with an encoded CRLF stays text", "ticket", "INC1%0d%0aX-Injected: yes", wire.Succeeded)
		b.field("requestedBy with emoji", "requestedBy", "Zoë 🤖 <zoe@contoso.com>", wire.Succeeded)
		// Keys the job accepts and the record store may not: the contract
		// does not say which way they go, only that they end at once.
		for _, key := range []string{"INC1\u200bx", "INC1\u00a0x", strings.Repeat("k", 256)} {
			b.field(fmt.Sprintf("idempotencyKey %.20q (%d bytes)", key, len(key)), "idempotencyKey", key, "").any = true
		}
		b.field("idempotencyKey of 257 bytes", "idempotencyKey", strings.Repeat("k", 257), wire.Rejected)
	}},
	{"broken encodings and shapes", func(b *builder) {
		b.raw("invalid UTF-8", wire.Rejected, func(d string) string { return `{"managedDeviceId":"` + d + `","ticket":"` + "\xff\xfe" + `"}` })
		b.raw("overlong UTF-8 slash", wire.Rejected, func(d string) string { return `{"managedDeviceId":"` + d + "\xc0\xaf" + `"}` })
		b.raw("UTF-8 surrogate", wire.Rejected, func(d string) string { return `{"managedDeviceId":"` + d + `","ticket":"` + "\xed\xa0\x80" + `"}` })
		b.raw("escaped slashes in the device", wire.Rejected, func(d string) string { return `{"managedDeviceId":"` + d + `\u002f..\u002fx"}` })
		b.raw("escaped NUL in the ticket", wire.Rejected, func(d string) string { return `{"managedDeviceId":"` + d + `","ticket":"a\u0000b"}` })
		b.raw("lone surrogate escape in the ticket", wire.Succeeded, func(d string) string { return `{"managedDeviceId":"` + d + `","ticket":"a\ud800b"}` })
		b.raw("empty", wire.Rejected, func(string) string { return "" })
		b.raw("whitespace", wire.Rejected, func(string) string { return " \n\t " })
		b.raw("null", wire.Rejected, func(string) string { return "null" })
		b.raw("array", wire.Rejected, func(d string) string { return `[{"managedDeviceId":"` + d + `"}]` })
		b.raw("string", wire.Rejected, func(string) string { return `"x"` })
		b.raw("empty object", wire.Rejected, func(string) string { return `{}` })
		b.raw("two objects", wire.Rejected, func(d string) string { return `{"managedDeviceId":"` + d + `"} {}` })
		b.raw("unknown field", wire.Rejected, func(d string) string { return `{"managedDeviceId":"` + d + `","device":"x"}` })
		b.raw("number for a string", wire.Rejected, func(d string) string { return `{"managedDeviceId":"` + d + `","ticket":1}` })
		b.raw("bad notAfter", wire.Rejected, func(d string) string { return `{"managedDeviceId":"` + d + `","notAfter":"tomorrow"}` })
		b.raw("truncated", wire.Rejected, func(d string) string { return `{"managedDeviceId":"` + d })
		b.raw("deeply nested unknown field", wire.Rejected, func(d string) string {
			return `{"managedDeviceId":"` + d + `","x":` + strings.Repeat("[", 7000) + strings.Repeat("]", 7000) + `}`
		})
		b.raw("deeply nested known field", wire.Rejected, func(d string) string {
			return `{"ticket":` + strings.Repeat(`{"a":`, 2500) + `1` + strings.Repeat("}", 2500) + `,"managedDeviceId":"` + d + `"}`
		})
		b.raw("nesting beyond the parser's limit", wire.Rejected, func(string) string {
			return strings.Repeat("[", 8100) + strings.Repeat("]", 8100)
		})
	}},
	{"oversize messages", func(b *builder) {
		b.raw("just over 16 KiB", wire.Rejected, func(d string) string {
			return `{"managedDeviceId":"` + d + `"` + strings.Repeat(" ", wire.MaxSize) + `}`
		})
		b.raw("600 KiB", wire.Rejected, func(d string) string {
			return `{"managedDeviceId":"` + d + `","ticket":"` + strings.Repeat("x", 600<<10) + `"}`
		})
		// The dead letter quotes the job: JSON escapes '<' in six bytes,
		// base64 takes four for three, so a job well under the 1 MiB limit
		// may make a dead letter over it.
		b.raw("200 KiB of characters JSON escapes", wire.Rejected, func(d string) string {
			return `{"managedDeviceId":"` + d + `","ticket":"` + strings.Repeat("<", 200<<10) + `"}`
		})
		b.raw("900 KiB of invalid UTF-8", wire.Rejected, func(d string) string {
			return `{"managedDeviceId":"` + d + `","ticket":"` + strings.Repeat("\xff", 900<<10) + `"}`
		})
	}},
}

// TestHostileInput submits each group of hostile messages to a worker.
// Each message must end with one result of the expected status, under a
// usable job id; a rejected job never reaches Graph and is dead-lettered;
// an accepted one reaches Graph once, at its own device's path; and no
// stored result carries a header but its own message id.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	for _, g := range hostileGroups {
		t.Run(g.name, func(t *testing.T) {
			var b builder
			g.build(&b)
			runHostile(t, b.cases)
		})
	}
	t.Run("over 1 MiB is refused at the door", func(t *testing.T) {
		ns := devservertest.Start(t)
		r := newRig(t, graphsim.Config{}, ns.URL(), 1)
		m := nats.NewMsg(r.names.Jobs("hostile"))
		m.Data = []byte(`{"managedDeviceId":"` + testsystem.Device + `","ticket":"` + strings.Repeat("x", 1<<20) + `"}`)
		if _, err := r.js.PublishMsg(t.Context(), m); err == nil {
			t.Fatal("a job of more than 1 MiB was stored")
		}
	})
}

// runHostile runs one group of cases on a system of its own and checks
// every invariant.
func runHostile(t *testing.T, cases []hostile) {
	ns := devservertest.Start(t)
	r := newRig(t, graphsim.Config{}, ns.URL(), 1)
	var want []reliability.Expected
	// Everything is queued before the worker starts, so that the stream
	// position of each message can be read to derive its id.
	for _, c := range cases {
		seq := r.publish(t.Context(), "hostile", c.id, c.data)
		e := reliability.Expected{JobID: c.id, Key: c.key, Device: c.device, Status: c.want, AnyStatus: c.any, NoGraph: c.want == wire.Rejected}
		if c.derived {
			e.JobID = r.derivedID(seq)
		}
		want = append(want, e)
	}
	r.startWorker(r.config("hostile"))
	rep := r.settle(want, 20*time.Second)
	if err := rep.Err(); err != nil {
		for i, c := range cases {
			if mentions(err.Error(), want[i].JobID) {
				t.Logf("%s is %s: %.100q", want[i].JobID, c.name, c.data)
			}
		}
	}
	r.checkResultHeaders()
	t.Logf("%d hostile messages: %d to be rejected", len(cases), count(cases, wire.Rejected))
}

// mentions reports whether text names the job id id as a whole word.
func mentions(text, id string) bool {
	for i := 0; ; {
		at := strings.Index(text[i:], id)
		if at < 0 {
			return false
		}
		end := i + at + len(id)
		if end == len(text) || !strings.ContainsRune("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_", rune(text[end])) {
			return true
		}
		i = end
	}
}

func count(cases []hostile, st wire.Status) int {
	n := 0
	for _, c := range cases {
		if c.want == st {
			n++
		}
	}
	return n
}
