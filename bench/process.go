package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a child process of the run: a worker or the raw consumer. It
// serves /readyz on httpAddr and logs to logPath.
type proc struct {
	name     string
	cmd      *exec.Cmd
	httpAddr string
	logPath  string
	done     chan struct{} // closed once the process has ended
	err      error         // how it ended; read after done
}

// fleet is the processes of one measurement.
type fleet struct {
	procs []*proc
	// exits receives one error per process that ended, whatever the
	// reason, so a measurement stops waiting for a fleet that died.
	exits chan error
}

// startFleet starts n processes from newCmd, the i-th named name-i, each
// with its own log and /readyz address, and waits until all are ready.
func startFleet(ctx context.Context, dir, name string, n int, newCmd func() *exec.Cmd, env func(name, httpAddr string) []string) (*fleet, error) {
	f := &fleet{exits: make(chan error, n)}
	for i := range n {
		pname := fmt.Sprintf("%s-%d", name, i+1)
		addr, err := freeAddr()
		if err != nil {
			f.stop()
			return nil, err
		}
		p, err := startProc(newCmd(), pname, env(pname, addr), dir, addr, f.exits)
		if err != nil {
			f.stop()
			return nil, err
		}
		f.procs = append(f.procs, p)
	}
	for _, p := range f.procs {
		if err := p.awaitReady(ctx); err != nil {
			f.stop()
			return nil, err
		}
	}
	return f, nil
}

// startProc starts cmd with a clean copy of this process's environment,
// plus the variables cmd already had, plus env.
func startProc(cmd *exec.Cmd, name string, env []string, dir, httpAddr string, exits chan<- error) (*proc, error) {
	p := &proc{name: name, cmd: cmd, httpAddr: httpAddr, logPath: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	logFile, err := os.Create(p.logPath)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	cmd.Env = append(append(baseEnv(), cmd.Env...), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("%s: start %s: %w", name, cmd.Path, err)
	}
	go func() {
		err := cmd.Wait()
		_ = logFile.Close()
		p.err = err
		close(p.done)
		exits <- fmt.Errorf("%s exited (%v); log %s:\n%s", name, err, p.logPath, p.logTail(10))
	}()
	return p, nil
}

// baseEnv is this process's environment without the settings a child is
// given explicitly, so that none leaks in from the shell.
func baseEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "NATS_") || strings.HasPrefix(name, "AZURE_") ||
			strings.HasPrefix(name, "RECOVER_") || strings.HasPrefix(name, "GRAPH_") || strings.HasPrefix(name, "GATEWAY_") ||
			name == "SSL_CERT_FILE" || name == roleEnv {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// awaitReady waits until the process answers 200 on /readyz: for a worker,
// connected, set up, holding a token and taking jobs.
func (p *proc) awaitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	url := "http://" + p.httpAddr + "/readyz"
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not ready: %w; log:\n%s", p.name, ctx.Err(), p.logTail(10))
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready (%v); log:\n%s", p.name, p.err, p.logTail(10))
		case <-tick.C:
		}
	}
}

// peakRSS is the process's peak resident set size (VmHWM) in bytes.
func (p *proc) peakRSS() (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("%s: peak RSS: %w", p.name, err)
	}
	for line := range strings.Lines(string(data)) {
		rest, ok := strings.CutPrefix(line, "VmHWM:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: peak RSS: %q: %w", p.name, line, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("%s: no VmHWM in /proc/%d/status", p.name, p.cmd.Process.Pid)
}

// cpuTime is the CPU time, user and system, the process has used so far.
func (p *proc) cpuTime() (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("%s: cpu time: %w", p.name, err)
	}
	// The command name, in parentheses, may hold spaces; the fields after
	// it are numbered from 3: utime is 14, stime 15, in clock ticks.
	_, rest, ok := strings.Cut(string(data), ") ")
	fields := strings.Fields(rest)
	if !ok || len(fields) < 13 {
		return 0, fmt.Errorf("%s: cpu time: unexpected /proc/%d/stat", p.name, p.cmd.Process.Pid)
	}
	var ticks uint64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: cpu time: %w", p.name, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// selfCPU is the CPU time this process (nats-server, the Graph double and
// the run itself) has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// stop ends the process once its measurement is done. It is killed: how
// a worker drains is not what the run measures, and a soft stop would cost
// every measurement up to a pull's wait.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// problems counts the warnings and errors in the process's log and
// returns the first.
func (p *proc) problems() (int, string) {
	f, err := os.Open(p.logPath)
	if err != nil {
		return 0, ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	n, first := 0, ""
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, `"level":"warn"`) || strings.Contains(line, `"level":"error"`) {
			if n++; first == "" {
				first = line
			}
		}
	}
	return n, first
}

// logTail is the last n lines of the process's log.
func (p *proc) logTail(n int) string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// peakRSS is the largest peak RSS of the fleet's processes.
func (f *fleet) peakRSS() (uint64, error) {
	var peak uint64
	for _, p := range f.procs {
		rss, err := p.peakRSS()
		if err != nil {
			return 0, err
		}
		peak = max(peak, rss)
	}
	return peak, nil
}

// cpuTime is the CPU time the fleet's processes have used so far.
func (f *fleet) cpuTime() (time.Duration, error) {
	var sum time.Duration
	for _, p := range f.procs {
		d, err := p.cpuTime()
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

// stop stops every process at once and waits for all.
func (f *fleet) stop() {
	done := make(chan struct{})
	for _, p := range f.procs {
		go func() { p.stop(); done <- struct{}{} }()
	}
	for range f.procs {
		<-done
	}
}

// check reports the first warning or error any process logged: the run
// measured something other than the happy path.
func (f *fleet) check() error {
	var errs []error
	for _, p := range f.procs {
		if n, first := p.problems(); n > 0 {
			errs = append(errs, fmt.Errorf("%s logged %d warnings or errors, the first: %s", p.name, n, first))
		}
	}
	return errors.Join(errs...)
}
