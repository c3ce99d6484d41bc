package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"
)

// profiles captures CPU profiles while one run goes on: one per child
// process, from its /debug/pprof/profile, and one of this process
// (nats-server, the Graph double and the run's polling). Each covers the
// same ProfileTime from the moment the fleet is ready, so the run must
// last at least that long to be profiled whole.
type profiles struct {
	done chan error
	n    int
}

// startProfiles begins profiling the fleet and this process into
// b.cfg.ProfileDir, naming each file label-<process>.pprof; with trace,
// it also records an execution trace of each child process
// (label-<process>.trace, for go tool trace).
func (b *bench) startProfiles(ctx context.Context, f *fleet, label string, trace bool) (*profiles, error) {
	dir, seconds := b.cfg.ProfileDir, max(1, int(b.cfg.ProfileTime/time.Second))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	p := &profiles{done: make(chan error, 2*len(f.procs)+1)}
	for _, proc := range f.procs {
		p.n++
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", proc.httpAddr, seconds)
		go func() {
			p.done <- fetchProfile(ctx, url, filepath.Join(dir, label+"-"+proc.name+".pprof"))
		}()
		if trace {
			p.n++
			url := fmt.Sprintf("http://%s/debug/pprof/trace?seconds=%d", proc.httpAddr, seconds)
			go func() {
				p.done <- fetchProfile(ctx, url, filepath.Join(dir, label+"-"+proc.name+".trace"))
			}()
		}
	}
	self, err := os.Create(filepath.Join(dir, label+"-nats-and-graph.pprof"))
	if err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	if err := pprof.StartCPUProfile(self); err != nil {
		_ = self.Close()
		return nil, fmt.Errorf("profile: %w", err)
	}
	p.n++
	go func() {
		t := time.NewTimer(time.Duration(seconds) * time.Second)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		pprof.StopCPUProfile()
		p.done <- self.Close()
	}()
	b.logf("  profiling %d process(es) and this one for %ds into %s", len(f.procs), seconds, dir)
	return p, nil
}

// wait returns once every profile is written.
func (p *profiles) wait() error {
	var errs []error
	for range p.n {
		errs = append(errs, <-p.done)
	}
	return errors.Join(errs...)
}

// fetchProfile saves what url answers into path.
func fetchProfile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile %s: %s", url, resp.Status)
	}
	out, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		_ = out.Close()
		return fmt.Errorf("profile %s: %w", url, err)
	}
	return out.Close()
}
