package main

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/recoverpasscode/recoverpasscode/ratelimit"
)

// machine is what the numbers ran on.
type machine struct {
	cpu       string
	nproc     int
	goVersion string
	// load is the 1-minute load average when the run started: other work
	// on the machine takes CPU from the run.
	load string
}

// describeMachine names the CPU model, the CPUs this process may use, the
// Go version and the load average.
func describeMachine() machine {
	m := machine{cpu: "unknown CPU", nproc: runtime.NumCPU(), goVersion: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH}
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(data)); len(f) > 0 {
			m.load = f[0]
		}
	}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if rest, ok := strings.CutPrefix(line, "model name"); ok {
				m.cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ":"))
				break
			}
		}
	}
	return m
}

// report is everything one run measured.
type report struct {
	machine machine
	cfg     config
	elapsed time.Duration
	// rounds are every pass over the unlimited throughput runs, and round
	// the median one, which the table shows.
	rounds   []round
	round    round
	latency  latencyRun
	rates    []rateRun
	budget   *budgetRun
	handler  []benchLine
	backlogs []throughputRun
	// submits are every pass over the gateway's submission measurements,
	// and submit the median one; gatewayLatency times POSTs with
	// Prefer: wait.
	submits        []submitRound
	submit         submitRound
	gatewayLatency latencyRun
	// durability is the fsync comparison, one per NATS layout.
	durability []durabilityRun
	// history is the device-history lookup among many audit events.
	history historyRun
}

// row is one line of the table; ok is nil where there is no target.
type row struct {
	what, result, target string
	ok                   *bool
}

// rows turns the measurements made into the table's lines.
func (r *report) rows() []row {
	var rows []row
	if len(r.rounds) > 0 {
		rows = append(rows, r.throughputRows()...)
	}
	if r.latency.samples > 0 {
		l := r.latency
		rows = append(rows, row{
			what: fmt.Sprintf("single job at idle, enqueue → result, less Graph's own time (%d sequential jobs, 1 worker)", l.samples),
			result: fmt.Sprintf("p50 **%s**, p99 **%s** (end to end p50 %s, p99 %s; Graph double p50 %s)",
				ms(l.overhead(50)), ms(l.overhead(99)), ms(percentile(l.e2e, 50)), ms(percentile(l.e2e, 99)), ms(percentile(l.graph, 50))),
			target: "p99 < 10 ms",
			ok:     check(l.overhead(99) < 10*time.Millisecond),
		})
	}
	rows = append(rows, r.rateRows()...)
	rows = append(rows, r.budgetRows()...)
	rows = append(rows, r.durabilityRows()...)
	for _, h := range r.handler {
		rows = append(rows, row{
			what: fmt.Sprintf("job handler, per job: `go test -bench %s -benchmem ./job`", h.name),
			result: fmt.Sprintf("%.0f allocs, %s, %.0f µs", h.metrics["allocs/op"], kib(h.metrics["B/op"]),
				h.metrics["ns/op"]/1e3),
		})
	}
	for i, bl := range r.backlogs {
		rw := row{
			what:   fmt.Sprintf("worker peak RSS (VmHWM) with %s jobs queued before it starts", thousands(float64(bl.jobs))),
			result: fmt.Sprintf("**%s** (%s jobs/s)", mib(bl.peakRSS), thousands(bl.jobsPerSec)),
		}
		if i > 0 {
			first := r.backlogs[0]
			ratio := float64(bl.peakRSS) / float64(first.peakRSS)
			rw.result += fmt.Sprintf(", ×%.2f of %s queued", ratio, thousands(float64(first.jobs)))
			rw.target, rw.ok = "flat (within 10%)", check(ratio <= 1.1)
		}
		rows = append(rows, rw)
	}
	if len(r.submits) > 0 {
		rows = append(rows, r.gatewayRows()...)
	}
	rows = append(rows, r.historyRows()...)
	return rows
}

// throughputRows are the lines of the raw ceiling, the floor and the
// worker fleets.
func (r *report) throughputRows() []row {
	cfg := r.cfg
	raw, floor := r.round.raw, r.round.floor
	of := ""
	if len(r.rounds) > 1 {
		of = fmt.Sprintf("; the median of %d rounds", len(r.rounds))
	}
	rows := []row{{
		what: fmt.Sprintf("raw JetStream ceiling: bare pull consumer stores a result and acks (1 process, %d in flight, %d jobs)", cfg.Concurrency, raw.jobs),
		result: fmt.Sprintf("%s jobs/s; CPU per job %s%s", thousands(raw.jobsPerSec), cpuSplit(raw, "consumer"),
			r.spread(" (rounds: %s jobs/s)", func(rd round) float64 { return rd.raw.jobsPerSec }, thousands)),
	}, {
		what: fmt.Sprintf("floor: bare consumer doing the worker's I/O per job — idempotency record created and completed, Graph call (MSAL, TLS), result stored, 2 audit events, ack (1 process, %d in flight, %d jobs)", cfg.Concurrency, floor.jobs),
		result: fmt.Sprintf("%s jobs/s = %.0f%% of raw; CPU per job %s%s",
			thousands(floor.jobsPerSec), 100*floor.jobsPerSec/raw.jobsPerSec, cpuSplit(floor, "consumer"),
			r.spread(" (rounds: %s of raw)", func(rd round) float64 { return rd.floor.jobsPerSec / rd.raw.jobsPerSec }, percent)),
	}}
	for i, w := range r.round.workers {
		share := w.jobsPerSec / raw.jobsPerSec
		rw := row{
			what: fmt.Sprintf("worker, %d process(es) × %d concurrency, unlimited, Graph 0 ms (%d jobs)", w.processes, cfg.Concurrency, w.jobs),
			result: fmt.Sprintf("%s jobs/s = **%.0f%%** of raw, %.0f%% of the floor%s; CPU per job %s (raw's total is %.0f%% of it, the floor's %.0f%%); peak RSS %s%s",
				thousands(w.jobsPerSec), 100*share, 100*w.jobsPerSec/floor.jobsPerSec, of, cpuSplit(w, "worker"),
				100*cpuShare(raw, w), 100*cpuShare(floor, w), mib(w.peakRSS),
				r.spread("; rounds: %s of raw", func(rd round) float64 { return rd.workers[i].jobsPerSec / rd.raw.jobsPerSec }, percent)),
		}
		if w.processes == 1 {
			rw.target, rw.ok = "≥ 50% of raw", check(share >= 0.5)
		}
		rows = append(rows, rw)
	}
	return rows
}

// rateRows are the lines of the rate-limited runs.
func (r *report) rateRows() []row {
	cfg := r.cfg
	var rows []row
	for _, rr := range r.rates {
		// The limiter's own design caps a steady backlog below 100% (see
		// ratelimit.Config.Ceiling); where that cap is under 97%, as on
		// windows of a second, the target is 97% of the cap.
		ceiling := ratelimit.Config{Rate: rr.rate}.Ceiling()
		want, target := 0.97, "≥ 97%, 0 429s"
		if ceiling < want {
			want, target = 0.97*ceiling, fmt.Sprintf("≥ 97%% of the design ceiling (%.1f%% here), 0 429s", 100*ceiling)
		}
		rows = append(rows, row{
			what: fmt.Sprintf("rate-limited %s, %d workers, Graph %s per call (%d jobs)", rr.rate, rr.workers, cfg.RateLatency, rr.jobs),
			result: fmt.Sprintf("**%.1f%%** of allowed in the steady state (design ceiling %.1f%%); the batch took %s (at best %s); **%d** 429s; at most %d calls in any %s",
				100*rr.share, 100*ceiling, rr.span.Round(10*time.Millisecond), rr.least, rr.throttled, rr.maxInWindow, rr.rate.Per),
			target: target,
			ok:     check(rr.share >= want && rr.throttled == 0),
		})
	}
	return rows
}

// gatewayRows are the lines of the HTTP gateway: submissions against
// direct publishes and the floor, and the latency of a waiting POST.
func (r *report) gatewayRows() []row {
	rd := r.submit
	direct, floor, web := rd.direct, rd.floor, rd.http
	of := ""
	if len(r.submits) > 1 {
		of = fmt.Sprintf("; the median of %d rounds", len(r.submits))
	}
	spread := func(format string, figure func(submitRound) float64, show func(float64) string) string {
		if len(r.submits) < 2 {
			return ""
		}
		var parts []string
		for _, s := range r.submits {
			parts = append(parts, show(figure(s)))
		}
		return fmt.Sprintf(format, strings.Join(parts, ", "))
	}
	share := web.perSec / direct.perSec
	plain := rd.plain
	l := r.gatewayLatency
	return []row{{
		what: fmt.Sprintf("gateway baseline: direct JetStream publishes of jobs, %d concurrent publishers each waiting for its ack (%d jobs)", submitClients, direct.jobs),
		result: fmt.Sprintf("%s jobs/s; CPU per job %s nats-server and clients%s", thousands(direct.perSec), us(direct.serverCPU),
			spread(" (rounds: %s jobs/s)", func(s submitRound) float64 { return s.direct.perSec }, thousands)),
	}, {
		what: fmt.Sprintf("gateway floor: the two JetStream writes a submission requires — request record created, then the job published — %d concurrent, no HTTP (%d jobs)", submitClients, floor.jobs),
		result: fmt.Sprintf("%s jobs/s = %.0f%% of direct; CPU per job %s nats-server and clients%s", thousands(floor.perSec), 100*floor.perSec/direct.perSec, us(floor.serverCPU),
			spread(" (rounds: %s of direct)", func(s submitRound) float64 { return s.floor.perSec / s.direct.perSec }, percent)),
	}, {
		what: fmt.Sprintf("gateway, HTTP alone: a do-nothing HTTP server process answering each POST 202 (no authentication, no validation, no NATS), the same %d clients with keep-alive (%d POSTs)", submitClients, plain.jobs),
		result: fmt.Sprintf("%s POSTs/s = %.0f%% of direct; CPU per POST %s server + %s clients%s", thousands(plain.perSec), 100*plain.perSec/direct.perSec, us(plain.cpu), us(plain.serverCPU),
			spread(" (rounds: %s of direct)", func(s submitRound) float64 { return s.plain.perSec / s.direct.perSec }, percent)),
	}, {
		what: fmt.Sprintf("gateway: `POST /v1/jobs` with an Idempotency-Key, keep-alive, %d concurrent clients, each answered 202 once JetStream holds the job (1 gateway process, %d jobs)", submitClients, web.jobs),
		result: fmt.Sprintf("%s jobs/s = **%.0f%%** of direct, %.0f%% of the floor, %.0f%% of HTTP alone%s; CPU per job %s gateway + %s nats-server and clients%s",
			thousands(web.perSec), 100*share, 100*web.perSec/floor.perSec, 100*web.perSec/plain.perSec, of, us(web.cpu), us(web.serverCPU),
			spread("; rounds: %s of direct", submitRound.share, percent)),
		target: "≥ 50% of direct",
		ok:     check(share >= 0.5),
	}, {
		what: fmt.Sprintf("gateway: `POST` with `Prefer: wait` at idle, answered 200 with the result, less Graph's own time (%d sequential jobs, 1 worker)", l.samples),
		result: fmt.Sprintf("p50 **%s**, p99 **%s** (end to end p50 %s, p99 %s; Graph double p50 %s)",
			ms(l.overhead(50)), ms(l.overhead(99)), ms(percentile(l.e2e, 50)), ms(percentile(l.e2e, 99)), ms(percentile(l.graph, 50))),
		target: "p99 < 10 ms",
		ok:     check(l.overhead(99) < 10*time.Millisecond),
	}}
}

// write prints the table, with the machine and the run time above it.
func (r *report) write(out io.Writer) error {
	m := r.machine
	var sb strings.Builder
	fmt.Fprintf(&sb, "Measured by `go run ./bench` on %d × %s, %s, load average %s at the start; the run took %s.\n\n",
		m.nproc, m.cpu, m.goVersion, m.load, r.elapsed.Round(time.Second))
	sb.WriteString("| measurement | result | target |\n|---|---|---|\n")
	for _, rw := range r.rows() {
		target := rw.target
		switch {
		case rw.ok == nil:
			target = "—"
		case *rw.ok:
			target += " ✓"
		default:
			target += " ✗"
		}
		fmt.Fprintf(&sb, "| %s | %s | %s |\n", rw.what, rw.result, target)
	}
	_, err := io.WriteString(out, sb.String())
	return err
}

func check(ok bool) *bool { return &ok }

// round is one pass over the unlimited throughput measurements, back to
// back, so that the raw ceiling, the floor and the worker see about the
// same machine and their ratios mean something even when it is shared.
type round struct {
	raw, floor throughputRun
	workers    []throughputRun
}

// share is the first worker fleet's throughput over the raw ceiling's.
func (rd round) share() float64 {
	if len(rd.workers) == 0 || rd.raw.jobsPerSec == 0 {
		return 0
	}
	return rd.workers[0].jobsPerSec / rd.raw.jobsPerSec
}

// medianRound is the round whose share is the median (the lower middle of
// an even number).
func medianRound(rounds []round) round {
	if len(rounds) == 0 {
		return round{}
	}
	sorted := slices.Clone(rounds)
	slices.SortFunc(sorted, func(a, b round) int { return cmp.Compare(a.share(), b.share()) })
	return sorted[(len(sorted)-1)/2]
}

// spread formats one figure of every round, in the order they ran, into
// format; with a single round there is nothing to add.
func (r *report) spread(format string, figure func(round) float64, show func(float64) string) string {
	if len(r.rounds) < 2 {
		return ""
	}
	var parts []string
	for _, rd := range r.rounds {
		parts = append(parts, show(figure(rd)))
	}
	return fmt.Sprintf(format, strings.Join(parts, ", "))
}

// percent formats a share as a whole percentage.
func percent(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) }

// cpuShare is the raw consumer's CPU per job, its server side included,
// over the worker's: the ratio the throughputs approach when the machine's
// CPUs are what limits them, and one that other work on the machine
// disturbs less than the throughputs.
func cpuShare(raw, w throughputRun) float64 {
	total := w.cpu + w.serverCPU
	if total <= 0 {
		return 0
	}
	return float64(raw.cpu+raw.serverCPU) / float64(total)
}

// cpuSplit says where a job's CPU time went: the measured processes, and
// nats-server with the Graph double, which share the machine with them.
func cpuSplit(t throughputRun, who string) string {
	return fmt.Sprintf("%s %s + %s nats-server and Graph double", us(t.cpu), who, us(t.serverCPU))
}

// thousands formats n rounded, with thousands separators.
func thousands(n float64) string {
	s := fmt.Sprintf("%.0f", n)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// kib formats bytes as KiB.
func kib(n float64) string { return fmt.Sprintf("%.1f KiB", n/1024) }

// budgetRows are the lines of the shared-budget run.
func (r *report) budgetRows() []row {
	bu := r.budget
	if bu == nil {
		return nil
	}
	cfg := r.cfg
	var rows []row
	for _, b := range []struct {
		name string
		run  batchRun
	}{{"a cold fleet", bu.cold}, {"the fleet restarted, its budget from the bucket", bu.warm}} {
		rows = append(rows, row{
			what: fmt.Sprintf("shared budget, %s: told %s, Graph leaves %s (another app uses the rest), %d workers, Graph %s per call (%d jobs)",
				b.name, bu.told, bu.real, bu.workers, cfg.RateLatency, bu.jobs),
			result: fmt.Sprintf("**%.1f%%** of the calls were 429s (%d of %d); **%.1f%%** of the real budget in the steady state; the batch took %s, **%.2f×** the %s a perfect client needs at %s; at most %d admitted calls in any %s",
				100*b.run.throttledShare(), b.run.throttled, b.run.calls, 100*b.run.share, b.run.span.Round(10*time.Millisecond), b.run.ratio(),
				b.run.perfect, bu.real, b.run.maxInWindow, bu.real.Per),
			target: "≤ 2% 429s, ≤ 1.1× the perfect time",
			ok:     check(b.run.throttledShare() <= 0.02 && b.run.ratio() <= 1.1),
		})
	}
	recovered := "not within the batch"
	if bu.recovered {
		recovered = fmt.Sprintf("after **%s**", bu.recovery.Round(100*time.Millisecond))
	}
	rows = append(rows, row{
		what:   fmt.Sprintf("shared budget: the other app stops (Graph leaves %s), %d jobs more", bu.told, bu.recoveryJobs),
		result: fmt.Sprintf("95%% of %s in one window %s", bu.told, recovered),
		target: "≤ 30 s",
		ok:     check(bu.recovered && bu.recovery <= 30*time.Second),
	})
	return rows
}
