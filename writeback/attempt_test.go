package writeback

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// lateAnswer is a transport that answers 200 only once the request's
// context has ended: what net/http's client hands over, now and then,
// when a hanging receiver returns (answering 200) on seeing the sender
// give up and close the connection.
type lateAnswer struct{}

func (lateAnswer) RoundTrip(r *http.Request) (*http.Response, error) {
	<-r.Context().Done()
	return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader("")), Header: http.Header{}, Request: r}, nil
}

// TestAnAnswerAfterTheTimeoutIsNoDelivery: an answer that comes after the
// attempt's deadline is a timeout, never a delivery. (The acceptance test's
// hanging receiver lost one result in a thousand to this before send
// checked it.)
func TestAnAnswerAfterTheTimeoutIsNoDelivery(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://127.0.0.1/hook", nil)
	_, a := send(&http.Client{Transport: lateAnswer{}}, req, nil)
	if a.ok() || !a.timeout {
		t.Fatalf("a late 200: %+v, want a timeout", a)
	}
}
