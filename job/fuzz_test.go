package job

import (
	"context"
	"encoding/json"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph"
	"github.com/recoverpasscode/recoverpasscode/idempotency"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// FuzzDecode feeds arbitrary messages and message ids through wire.Decode,
// wire.Policy.Validate and, for the answer, Handle. Whatever the input:
//   - a message wire.Decode refuses still yields a usable job id and key;
//   - a job that passes Validate names a Graph path of its form with no
//     query, fragment or dot segment, a usable reply subject, free text
//     without control characters, and a key the idempotency store accepts;
//     and it survives a JSON round trip unchanged;
//   - every answer Handle gives carries a job id usable as a subject token
//     and a message id, and a dead letter exactly when the job is refused.
//
// Run it with: go test -run '^$' -fuzz '^FuzzDecode$' -fuzztime 10s ./job
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"managedDeviceId":"` + device + `"}`,
		`{"id":"7d194212-5e8f-42e7-8044-67c3efd91986","idempotencyKey":"INC0012345/2d6a","tenantId":"` + tenant + `","managedDeviceId":"` + device + `","userId":"o'brien@contoso.com","replyTo":"_INBOX.x","requestedBy":"agent@contoso.com","ticket":"INC0012345","notAfter":"2099-01-02T15:04:05Z"}`,
		`{"managedDeviceId":"` + device + `","detectedAppId":"..x"}`,
		`{"managedDeviceId":"` + device + `","userId":"a/../b@contoso.com"}`,
		`{"managedDeviceId":"` + device + `\u002f..\u002fx"}`,
		`{"id":"..","managedDeviceId":"` + device + `"}`,
		`{"id":"a b","managedDeviceId":"` + device + `"}`,
		`{"managedDeviceId":"` + device + `","ticket":"INC1\r\nX-Injected: yes"}`,
		`{"managedDeviceId":"` + device + `","idempotencyKey":"INC1` + "\u200b" + `x"}`,
		`{"managedDeviceId":"` + device + `","idempotencyKey":"` + strings.Repeat("k", 256) + `"}`,
		`{"managedDeviceId":"` + device + `","replyTo":"a..b"}`,
		`{"managedDeviceId":"` + device + `","ticket":"` + "\xff" + `"}`,
		`{"MANAGEDDEVICEID":"` + device + `"}`,
		`{"managedDeviceId":"` + device + `"} {}`,
		`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
		`null`, ``,
	} {
		f.Add([]byte(seed), "")
		f.Add([]byte(seed), "msg-1")
	}
	f.Add([]byte(`{"managedDeviceId":"`+device+`"}`), "../x")
	f.Add([]byte(`{"managedDeviceId":"`+device+`"}`), "a\u2215b")

	policy := wire.Policy{DefaultTenant: tenant}
	f.Fuzz(func(t *testing.T, data []byte, msgID string) {
		meta := wire.Meta{Source: "fuzz", MsgID: msgID, Stream: "S", Sequence: 7, Timestamp: time.Unix(1700000000, 0)}
		checkAnswer(t, policy, data, meta)
		j, err := wire.Decode(data, meta)
		if err != nil {
			if !wire.ValidID(j.ID) || j.IdempotencyKey == "" {
				t.Fatalf("Decode refused the message (%v) without a usable id: %q, key %q", err, j.ID, j.IdempotencyKey)
			}
			if len(err.Error()) > 600 {
				t.Fatalf("Decode's error echoes %d bytes of input", len(err.Error()))
			}
			return
		}
		if len(data) > wire.MaxSize {
			t.Fatalf("Decode accepted %d bytes", len(data))
		}
		if err := policy.Validate(&j); err != nil {
			return
		}
		checkValid(t, j)
		again, err := wire.Decode(mustJSON(t, j), wire.Meta{Source: "fuzz"})
		if err != nil {
			t.Fatalf("a valid job does not decode again: %v", err)
		}
		if err := policy.Validate(&again); err != nil || !reflect.DeepEqual(normal(again), normal(j)) {
			t.Fatalf("round trip changed the job (%v):\n%+v\n%+v", err, j, again)
		}
	})
}

// checkValid checks what a job that passed Validate promises.
func checkValid(t *testing.T, j wire.Job) {
	t.Helper()
	if !wire.ValidID(j.ID) || !wire.ValidSubject("recoverpasscode.results.fuzz."+j.ID) {
		t.Fatalf("valid job with unusable id %q", j.ID)
	}
	if j.ReplyTo != "" && !wire.ValidSubject(j.ReplyTo) {
		t.Fatalf("valid job with reply subject %q", j.ReplyTo)
	}
	for _, s := range []string{j.IdempotencyKey, j.Ticket, j.RequestedBy} {
		if strings.ContainsAny(s, "\r\n\x00") {
			t.Fatalf("valid job with a line break or NUL in %q", s)
		}
	}
	if err := idempotency.ValidateKey(LedgerKey(&j)); err != nil {
		t.Fatalf("valid job whose key the idempotency store refuses: %v", err)
	}
	path, err := j.Target().Path()
	if err != nil {
		t.Fatalf("valid job without a path: %v", err)
	}
	u, err := url.Parse("https://graph.example/v1.0" + path)
	if err != nil {
		t.Fatalf("path %q does not parse: %v", path, err)
	}
	segs := strings.Split(u.EscapedPath(), "/")
	want := map[string]int{wire.FormManagedDevice: 6, wire.FormUser: 7, wire.FormDetectedApp: 8}[j.Target().Form()]
	if u.RawQuery != "" || u.Fragment != "" || len(segs) != want || strings.Contains(path, "/./") || strings.Contains(path, "/../") {
		t.Fatalf("job %+v gave path %q", j, path)
	}
	if dev, _ := url.PathUnescape(segs[len(segs)-2]); dev != j.ManagedDeviceID {
		t.Fatalf("path %q does not end at device %q", path, j.ManagedDeviceID)
	}
}

// checkAnswer runs Handle on a delivery that has used up its deliveries,
// so that no dependency is reached: a valid job ends failed, an invalid
// one rejected. Either answer must be publishable as it stands.
func checkAnswer(t *testing.T, policy wire.Policy, data []byte, meta wire.Meta) {
	t.Helper()
	u := unreachable{t}
	h, err := New(Config{Graph: u, Tokens: u, Limiter: u, Ledger: u, Policy: policy, Worker: "fuzz", MaxDeliveries: 1})
	if err != nil {
		t.Fatal(err)
	}
	out := h.Handle(context.Background(), Delivery{Data: data, Meta: meta, NumDelivered: 2})
	if out.Result == nil || out.Disposition == Retry {
		t.Fatalf("Handle gave no answer: %+v", out)
	}
	if !wire.ValidID(out.Result.JobID) {
		t.Fatalf("the answer's job id %q is not usable as a subject token or message id", out.Result.JobID)
	}
	if (out.Disposition == Term) != (out.DeadLetter != "") {
		t.Fatalf("disposition %v with dead letter %q", out.Disposition, out.DeadLetter)
	}
	if out.ReplyTo != "" && !wire.ValidSubject(out.ReplyTo) {
		t.Fatalf("answer sent to %q", out.ReplyTo)
	}
	if _, err := json.Marshal(out.Result); err != nil {
		t.Fatalf("the answer does not encode: %v", err)
	}
}

// unreachable is every dependency of a Handler, for answers that must not
// reach any.
type unreachable struct{ t *testing.T }

func (u unreachable) RecoverPasscode(context.Context, wire.Target) (graph.Response, error) {
	u.t.Fatal("Graph called")
	return graph.Response{}, nil
}

func (u unreachable) Token(context.Context, string) (string, error) {
	u.t.Fatal("token asked for")
	return "", nil
}

func (u unreachable) Wrote(ratelimit.Permit, time.Time) {
	u.t.Fatal("write noted")
}

func (u unreachable) Answered(ratelimit.Permit, time.Time) {
	u.t.Fatal("answer noted")
}

func (u unreachable) Ended(ratelimit.Permit, time.Time) {
	u.t.Fatal("end noted")
}

func (u unreachable) Refresh(context.Context, string) (string, error) {
	u.t.Fatal("token refreshed")
	return "", nil
}

func (u unreachable) Take(context.Context, string) (ratelimit.Permit, error) {
	u.t.Fatal("rate limit waited for")
	return ratelimit.Permit{}, nil
}

func (u unreachable) Pause(context.Context, string, time.Time) error {
	u.t.Fatal("tenant paused")
	return nil
}

func (u unreachable) Throttled(context.Context, string, ratelimit.Throttle) error {
	u.t.Fatal("tenant throttled")
	return nil
}

func (u unreachable) PausedUntil(string) (time.Time, bool) {
	u.t.Fatal("pause looked up")
	return time.Time{}, false
}

func (u unreachable) AcquireFor(context.Context, string, string, idempotency.Binding) (idempotency.Claim, error) {
	u.t.Fatal("idempotency key acquired")
	return idempotency.Claim{}, nil
}

func (u unreachable) Await(context.Context, idempotency.Claim) (idempotency.Claim, error) {
	u.t.Fatal("idempotency key awaited")
	return idempotency.Claim{}, nil
}

// normal drops what differs legitimately between two decodings of one job.
func normal(j wire.Job) wire.Job {
	if j.NotAfter != nil {
		at := j.NotAfter.UTC()
		j.NotAfter = &at
	}
	return j
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
