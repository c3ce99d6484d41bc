package wire

import "unicode/utf8"

// Truncate shortens s to at most n bytes, cut at a rune boundary and marked
// with an ellipsis, so that no input is echoed back at length in an error,
// a result or a log line.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
