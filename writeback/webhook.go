package writeback

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"time"
)

// target is where an endpoint's deliveries go: one attempt per call.
type target interface {
	deliver(ctx context.Context, d delivery) attempt
}

// webhookTarget POSTs each result as it is stored, signed.
type webhookTarget struct {
	spec   *webhookSpec
	client *http.Client
	now    func() time.Time
}

var _ target = (*webhookTarget)(nil)

// deliver POSTs the result with the Standard Webhooks headers. Each attempt
// has its own timestamp and signatures; the id stays the same.
func (w *webhookTarget) deliver(ctx context.Context, d delivery) attempt {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.spec.url, bytes.NewReader(d.body))
	if err != nil {
		return attempt{err: err}
	}
	ts := w.now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderID, d.id)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(HeaderSignature, Sign(d.id, ts, d.body, w.spec.secrets...))
	_, a := send(w.client, req, w.spec.redact)
	return a
}
