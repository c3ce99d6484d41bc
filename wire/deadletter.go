package wire

import "time"

// MaxQuote is the most of a job a dead letter quotes: escaped as JSON or
// base64 it stays far below NATS's 1 MiB message limit.
const MaxQuote = 64 << 10

// DeadLetter is what the DLQ stores for a job that could not be processed.
type DeadLetter struct {
	JobID    string `json:"jobId"`
	Source   string `json:"source"`
	Reason   string `json:"reason"`
	Subject  string `json:"subject"`
	Sequence uint64 `json:"sequence"`
	// Job is the original message as text, or JobBase64 when it was not
	// valid UTF-8 or was cut: a message over MaxQuote bytes is quoted only
	// up to it (JobTruncated, with its full JobSize), so that the dead
	// letter itself always fits in a NATS message.
	Job          string              `json:"job,omitempty"`
	JobBase64    string              `json:"jobBase64,omitempty"`
	JobTruncated bool                `json:"jobTruncated,omitempty"`
	JobSize      int                 `json:"jobSize"`
	Headers      map[string][]string `json:"headers,omitempty"`
	Result       *Result             `json:"result"`
	At           time.Time           `json:"at"`
}
