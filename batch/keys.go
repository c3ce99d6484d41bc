package batch

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// DefaultSource is the submitting system of file batches: their jobs go to
// <prefix>.jobs.batch.
const DefaultSource = "batch"

// hashLen is the number of hex digits of a device's hash in job ids and
// keys: 80 bits, so two devices of one batch never share one.
const hashLen = 20

// derivedPrefix starts every batch name derived from a file's content.
const derivedPrefix = "auto-"

// ValidName reports whether s can name a batch: 1 to 64 letters, digits,
// '-' or '_'. The name becomes a subject token and part of every job id.
func ValidName(s string) bool { return wire.ValidToken(s) }

// checkName explains why s cannot name a batch.
func checkName(s string) error {
	if !ValidName(s) {
		return fmt.Errorf("batch: name %q: use 1 to 64 letters, digits, '-' or '_'", s)
	}
	return nil
}

// rowTarget is the target a row names, for its key: a row that names its
// device by azureADDeviceId or serialNumber stands for "<field>:<value>",
// which the worker resolves; two rows naming one device differently are
// then two jobs under two keys, and the worker's records of each say so.
func rowTarget(j *wire.Job) wire.Target {
	t := j.Target()
	if l, ok := j.Lookup(); ok {
		t.ManagedDeviceID = l.Field + ":" + l.Value
	}
	return t
}

// deviceKey is what makes two rows the same action: the tenant and the
// device, case-folded. The path form (userId, detectedAppId) is left out on
// purpose: two rows reaching one device through different paths would
// recover its passcode twice.
func deviceKey(t wire.Target) string {
	return strings.ToLower(strings.TrimSpace(t.TenantID)) + "/" + strings.ToLower(strings.TrimSpace(t.ManagedDeviceID))
}

// deviceHash is the short hash of a device key used in job ids and keys.
func deviceHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])[:hashLen]
}

// DeriveName names a batch after its devices: "auto-" and 12 hex digits of
// the hash of the sorted device keys. The same devices give the same name
// whatever the file is called, its column order, row order, line endings
// or other columns; adding or removing a device gives another name.
func DeriveName(rows []Row) string {
	keys := make([]string, 0, len(rows))
	for _, r := range rows {
		keys = append(keys, deviceKey(rowTarget(&r.Job)))
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	sum := sha256.Sum256([]byte(strings.Join(keys, "\n")))
	return derivedPrefix + hex.EncodeToString(sum[:])[:12]
}

// JobID is the job id of a device's row in a batch: "<batch>-<hash>". It is
// the same on every run of the batch, so a re-sent row is deduplicated by
// its Nats-Msg-Id and its stored result is found again.
func JobID(batch string, t wire.Target) string {
	return batch + "-" + deviceHash(deviceKey(t))
}

// Key is the idempotency key of a device's row in a batch:
// "batch/<batch>/<hash>". While its record lives, the device is recovered
// at most once for the batch however often the batch is run.
func Key(batch string, t wire.Target) string {
	return KeyPrefix(batch) + deviceHash(deviceKey(t))
}

// KeyPrefix starts the idempotency key of every job of a batch.
func KeyPrefix(batch string) string { return "batch/" + batch + "/" }

// ResultSubject is where a batch job's result is stored:
// <prefix>.results.<source>.<batch>.<jobId>. The batch token lets a reader
// select one batch's results with the filter ResultsFilter, while the
// source stays the second token, so a source's NATS permissions (results
// under <prefix>.results.<source>.>) cover its batches.
func ResultSubject(names wire.Names, source, batch, jobID string) string {
	return names.Result(source, batch+"."+jobID)
}

// ResultsFilter matches every stored result of a batch, replays included.
func ResultsFilter(names wire.Names, source, batch string) string {
	return names.Result(source, batch+".>")
}

// replaySuffix matches the suffix that `enqueue dlq replay` appends to a
// job id ("-r<DLQ sequence>").
var replaySuffix = regexp.MustCompile(`-r[0-9]+$`)

// RowID is the job id of the row a job belongs to: its id without the
// suffix a replay of a dead letter added, so a replay's result counts for
// its row.
func RowID(jobID string) string {
	return replaySuffix.ReplaceAllString(jobID, "")
}

// ReplayID is the job id of the replay of dead letter seq of job id: the id
// without any earlier replay suffix, plus "-r<seq>". Replaying one dead
// letter twice gives the same id (stored once within the duplicate window),
// and ids stay within the 128 characters a job id may have.
func ReplayID(id string, seq uint64) string {
	suffix := fmt.Sprintf("-r%d", seq)
	base := RowID(id)
	if len(base)+len(suffix) > 128 {
		base = base[:128-len(suffix)]
	}
	return base + suffix
}

// ReplayKey is the fresh idempotency key a replay of dead letter seq uses
// when asked for one: the key without an earlier replay suffix, plus
// "/r<seq>". Like ReplayID it is the same for every replay of one dead
// letter, so replaying it twice still calls Graph at most once.
func ReplayKey(key string, seq uint64) string {
	if i := strings.LastIndex(key, "/r"); i >= 0 && isDigits(key[i+2:]) {
		key = key[:i]
	}
	suffix := fmt.Sprintf("/r%d", seq)
	if len(key)+len(suffix) > 256 {
		key = key[:256-len(suffix)]
	}
	return key + suffix
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
