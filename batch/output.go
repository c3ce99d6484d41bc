package batch

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// OutputFormat is how results are written to a file.
type OutputFormat int

const (
	// OutputJSONL writes one result object per line, with the row's line.
	OutputJSONL OutputFormat = iota + 1
	// OutputCSV writes a header and one row per result.
	OutputCSV
)

// OutputFormatOf picks the output format from a file name's extension:
// .csv, or .jsonl, .ndjson and .json.
func OutputFormatOf(path string) (OutputFormat, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		return OutputCSV, nil
	case ".jsonl", ".ndjson", ".json":
		return OutputJSONL, nil
	default:
		return 0, fmt.Errorf("batch: output %q: name it .csv or .jsonl to choose the format", path)
	}
}

// Entry is one result to write and the file line of its row (0 when
// unknown).
type Entry struct {
	Line   int
	Result wire.Result
}

// lineResult is a result with its row's line, as written to JSONL.
type lineResult struct {
	Line int `json:"line,omitempty"`
	wire.Result
}

// WriteResults writes entries to w in format f.
func WriteResults(w io.Writer, f OutputFormat, entries []Entry) error {
	switch f {
	case OutputJSONL:
		enc := json.NewEncoder(w)
		for _, e := range entries {
			if err := enc.Encode(lineResult{Line: e.Line, Result: e.Result}); err != nil {
				return fmt.Errorf("batch: write results: %w", err)
			}
		}
		return nil
	case OutputCSV:
		return writeCSV(w, entries)
	default:
		return fmt.Errorf("batch: write results: unknown format %d", f)
	}
}

// csvHeader names the columns of a CSV of results, in the job's terms.
var csvHeader = []string{
	"line", "jobId", "status", "replayed", "uncertain", "managedDeviceId", "userId", "detectedAppId",
	"tenantId", "ticket", "requestedBy", "attempts", "graphStatus", "graphErrorCode",
	"graphErrorMessage", "graphRequestId", "clientRequestId", "error", "finishedAt", "worker",
}

func writeCSV(w io.Writer, entries []Entry) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return fmt.Errorf("batch: write results: %w", err)
	}
	for _, e := range entries {
		r := e.Result
		line := ""
		if e.Line > 0 {
			line = strconv.Itoa(e.Line)
		}
		var g wire.GraphOutcome
		if r.Graph != nil {
			g = *r.Graph
		}
		graphStatus := ""
		if g.Status != 0 {
			graphStatus = strconv.Itoa(g.Status)
		}
		finished := ""
		if !r.FinishedAt.IsZero() {
			finished = r.FinishedAt.UTC().Format(time.RFC3339Nano)
		}
		rec := []string{
			line, r.JobID, string(r.Status), strconv.FormatBool(r.Replayed), strconv.FormatBool(r.Uncertain),
			r.ManagedDeviceID, r.UserID, r.DetectedAppID, r.TenantID, r.Ticket, r.RequestedBy,
			strconv.Itoa(r.Attempts), graphStatus, g.ErrorCode, g.ErrorMessage, g.RequestID,
			g.ClientRequestID, r.Error, finished, r.Worker,
		}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("batch: write results: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("batch: write results: %w", err)
	}
	return nil
}
