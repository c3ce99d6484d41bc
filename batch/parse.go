package batch

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"
)

// Format is the layout of a batch file.
type Format int

const (
	// Sniff picks CSV or JSONL from the content: JSONL when the first
	// non-blank character is '{'.
	Sniff Format = iota
	// CSV is comma-separated values with a header row (';' is accepted
	// when the header uses it, as spreadsheets in some locales write).
	CSV
	// JSONL is one JSON object per line.
	JSONL
)

// FormatOf picks the format from a file name's extension: .csv is CSV,
// .jsonl, .ndjson and .json are JSONL, anything else (and "-") is sniffed.
func FormatOf(path string) Format {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		return CSV
	case ".jsonl", ".ndjson", ".json":
		return JSONL
	default:
		return Sniff
	}
}

// MaxFileSize bounds a batch file: 64 MiB holds about half a million rows.
const MaxFileSize = 64 << 20

// Columns are the column names (and JSONL field names) a batch file may
// use, matched without regard to case.
var Columns = []string{"managedDeviceId", "azureADDeviceId", "serialNumber", "userId", "detectedAppId", "tenantId", "ticket", "requestedBy"}

// record is one data row of a file: its line number and its values by
// canonical column name, or why it could not be read.
type record struct {
	line   int
	fields map[string]string
	err    error
}

// FileError is a problem with a file as a whole (its header, its size, its
// encoding): no row of it can be used.
type FileError struct {
	Line   int
	Reason string
}

// Error says what is wrong and, when known, on which line.
func (e *FileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("batch: line %d: %s", e.Line, e.Reason)
	}
	return "batch: " + e.Reason
}

// readRecords reads every data row of a file.
func readRecords(r io.Reader, f Format) ([]record, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("batch: read file: %w", err)
	}
	if len(data) > MaxFileSize {
		return nil, &FileError{Reason: fmt.Sprintf("file is larger than %d MiB; split it", MaxFileSize>>20)}
	}
	data = bytes.TrimPrefix(data, []byte("\uFEFF")) // spreadsheets' UTF-8 byte order mark
	if !utf8.Valid(data) {
		return nil, &FileError{Reason: "file is not UTF-8 text (save it as CSV UTF-8)"}
	}
	if f == Sniff {
		f = sniff(data)
	}
	if f == JSONL {
		return readJSONL(data), nil
	}
	return readCSV(data)
}

func sniff(data []byte) Format {
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		return JSONL
	}
	return CSV
}

// column finds the canonical name of a column, ignoring case and spaces.
func column(name string) (string, bool) {
	name = strings.TrimSpace(name)
	for _, c := range Columns {
		if strings.EqualFold(c, name) {
			return c, true
		}
	}
	return "", false
}

var columnList = strings.Join(Columns, ", ")

func readCSV(data []byte) ([]record, error) {
	cr := csv.NewReader(bytes.NewReader(data))
	cr.Comma = delimiter(data)
	cr.FieldsPerRecord = -1 // counted per row, to report the row rather than stop
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, &FileError{Reason: "file is empty: want a header row naming the columns (" + columnList + ")"}
	}
	if err != nil {
		return nil, &FileError{Line: 1, Reason: "header: " + csvReason(err)}
	}
	cols, err := headerColumns(header)
	if err != nil {
		return nil, err
	}
	var out []record
	for {
		values, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				line = pe.StartLine
			}
			out = append(out, record{line: line, err: errors.New(csvReason(err))})
			continue
		}
		out = append(out, csvRecord(line, cols, values))
	}
}

// delimiter is ';' when the header line has semicolons and no commas.
func delimiter(data []byte) rune {
	first, _, _ := bytes.Cut(data, []byte("\n"))
	if bytes.IndexByte(first, ';') >= 0 && bytes.IndexByte(first, ',') < 0 {
		return ';'
	}
	return ','
}

func headerColumns(header []string) ([]string, error) {
	cols := make([]string, len(header))
	seen := map[string]bool{}
	for i, h := range header {
		c, ok := column(h)
		if !ok {
			return nil, &FileError{Line: 1, Reason: fmt.Sprintf("unknown column %q (columns are %s; case does not matter)", h, columnList)}
		}
		if seen[c] {
			return nil, &FileError{Line: 1, Reason: fmt.Sprintf("column %s appears twice", c)}
		}
		seen[c] = true
		cols[i] = c
	}
	if !seen["managedDeviceId"] && !seen["azureADDeviceId"] && !seen["serialNumber"] {
		return nil, &FileError{Line: 1, Reason: "no managedDeviceId, azureADDeviceId or serialNumber column (columns are " + columnList + ")"}
	}
	return cols, nil
}

func csvRecord(line int, cols, values []string) record {
	if blank(values) {
		return record{line: line} // an empty spreadsheet row: skipped
	}
	if len(values) != len(cols) {
		return record{line: line, err: fmt.Errorf("%d values, but the header names %d columns", len(values), len(cols))}
	}
	fields := make(map[string]string, len(cols))
	for i, c := range cols {
		fields[c] = values[i]
	}
	return record{line: line, fields: fields}
}

func blank(values []string) bool {
	for _, v := range values {
		if strings.TrimSpace(v) != "" {
			return false
		}
	}
	return true
}

// csvReason describes a CSV syntax error without its position, which the
// report gives as the line.
func csvReason(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return "not valid CSV: " + pe.Err.Error()
	}
	return err.Error()
}

func readJSONL(data []byte) []record {
	var out []record
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), MaxFileSize)
	for line := 1; sc.Scan(); line++ {
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		fields, err := jsonFields(text)
		out = append(out, record{line: line, fields: fields, err: err})
	}
	return out
}

// jsonFields reads one JSONL row: an object whose members are columns with
// string values (null counts as absent).
func jsonFields(text []byte) (map[string]string, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(text, &raw); err != nil {
		return nil, errors.New("not a JSON object")
	}
	names := make([]string, 0, len(raw))
	for n := range raw {
		names = append(names, n)
	}
	sort.Strings(names) // report the same field first on every run
	fields := make(map[string]string, len(raw))
	for _, n := range names {
		c, ok := column(n)
		if !ok {
			return nil, fmt.Errorf("unknown field %q (fields are %s)", n, columnList)
		}
		if _, dup := fields[c]; dup {
			return nil, fmt.Errorf("field %s appears twice", c)
		}
		var v *string
		if err := json.Unmarshal(raw[n], &v); err != nil {
			return nil, fmt.Errorf("%s: want a string", c)
		}
		if v != nil {
			fields[c] = *v
		}
	}
	return fields, nil
}
