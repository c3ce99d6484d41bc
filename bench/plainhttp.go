package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/uuid"
)

// rolePlainHTTP makes this program the plain HTTP server of the gateway
// rounds: HTTP alone, with nothing behind it.
const rolePlainHTTP = "plain-http"

// plainHTTPMain serves POST /v1/jobs on RECOVER_HTTP_ADDR the way the
// gateway answers a new job (202, Location, Retry-After, X-Request-Id and
// {"jobId","status":"queued"}), but reads the body and does nothing else:
// no authentication, no validation, no NATS. It measures what HTTP/1.1
// alone costs this machine, with the same clients as the gateway's run.
// It answers /readyz and stops on SIGTERM.
func plainHTTPMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := servePlainHTTP(ctx, os.Getenv("RECOVER_HTTP_ADDR")); err != nil {
		fmt.Fprintln(os.Stderr, "plain HTTP server:", err)
		return 1
	}
	return 0
}

func servePlainHTTP(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("RECOVER_HTTP_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("POST /v1/jobs", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		id := uuid.NewString()
		h := w.Header()
		h.Set("X-Request-Id", uuid.NewString())
		h.Set("Location", "/v1/jobs/"+id)
		h.Set("Retry-After", "2")
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"jobId":"`+id+`","status":"queued"}`+"\n")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	if err := srv.Close(); err != nil {
		return err
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
