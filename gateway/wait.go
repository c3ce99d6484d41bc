package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
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

// waitResult waits up to d for the job's result on sub, or until the
// caller goes away.
func (s *Server) waitResult(r *http.Request, sub *nats.Subscription, d time.Duration) (wire.Result, bool) {
	ctx, cancel := context.WithTimeout(r.Context(), d)
	defer cancel()
	for {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			outcome := waitTimeout
			if r.Context().Err() != nil {
				outcome = waitCanceled
			}
			s.metrics.waits.WithLabelValues(outcome).Inc()
			return wire.Result{}, false
		}
		var res wire.Result
		if json.Unmarshal(msg.Data, &res) == nil && res.JobID != "" {
			s.metrics.waits.WithLabelValues(waitResult).Inc()
			return res, true
		}
	}
}
