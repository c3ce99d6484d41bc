package service

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// SignalContexts returns the two contexts Run takes, driven by the
// process's signals: soft is cancelled by the first SIGINT or SIGTERM
// (drain), hard by the second (hand the jobs in flight back now).
func SignalContexts() (soft, hard context.Context) {
	soft, cancelSoft := context.WithCancel(context.Background())
	hard, cancelHard := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		cancelSoft()
		<-sigs
		cancelHard()
	}()
	return soft, hard
}
