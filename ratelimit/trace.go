package ratelimit

import (
	"context"
	"net/http/httptrace"
	"time"
)

// Tracer learns when the call a Permit let go was written and answered.
// *Limiter implements it.
type Tracer interface {
	Wrote(p Permit, sent time.Time)
	Answered(p Permit, at time.Time)
}

var _ Tracer = (*Limiter)(nil)

// WithTrace returns ctx with an HTTP client trace that tells t when the
// call p let go is written (Wrote) and when its answer begins to arrive
// (Answered): pass it to the one Graph call of the permit, and call the
// Limiter's Ended once that call returns.
func WithTrace(ctx context.Context, t Tracer, p Permit) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest:         func(httptrace.WroteRequestInfo) { t.Wrote(p, time.Now()) },
		GotFirstResponseByte: func() { t.Answered(p, time.Now()) },
	})
}
