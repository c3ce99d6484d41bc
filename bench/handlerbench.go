package main

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// benchLine is one result line of go test -bench.
type benchLine struct {
	// name is the benchmark's name without the -GOMAXPROCS suffix.
	name string
	// metrics maps each unit (ns/op, B/op, allocs/op, custom ones) to its
	// value.
	metrics map[string]float64
}

// handlerAllocs runs the job handler's benchmark with -benchmem in the
// module and returns its lines.
func (b *bench) handlerAllocs(ctx context.Context) ([]benchLine, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "^BenchmarkHandle$",
		"-benchmem", "-benchtime", b.cfg.HandlerBenchtime, "-count", "1", "./job")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go test -bench ./job: %w\n%s", err, out)
	}
	lines, err := parseBench(string(out))
	if err != nil {
		return nil, err
	}
	for _, l := range lines {
		b.logf("  %s: %.0f allocs/op, %.0f B/op, %.0f µs/op", l.name, l.metrics["allocs/op"], l.metrics["B/op"], l.metrics["ns/op"]/1e3)
	}
	return lines, nil
}

// benchName matches a result line's name and iteration count.
var benchName = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+(\d+)\s+(.*)$`)

// parseBench reads the result lines of go test -bench output.
func parseBench(out string) ([]benchLine, error) {
	var lines []benchLine
	for line := range strings.Lines(out) {
		m := benchName.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		fields := strings.Fields(m[4])
		if len(fields)%2 != 0 {
			return nil, fmt.Errorf("benchmark line %q: want value and unit pairs", line)
		}
		l := benchLine{name: m[1], metrics: map[string]float64{}}
		for i := 0; i < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return nil, fmt.Errorf("benchmark line %q: %w", line, err)
			}
			l.metrics[fields[i+1]] = v
		}
		lines = append(lines, l)
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("no benchmark results in:\n%s", out)
	}
	return lines, nil
}
