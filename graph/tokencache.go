package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/recoverpasscode/recoverpasscode/wire"
	"github.com/rs/zerolog"
)

// tokenCache keeps MSAL's token cache in a file, for `worker login` to write and the
// worker to read and refresh. It implements MSAL's cache.ExportReplace and is safe for
// concurrent use.
//
// Writes replace the file atomically (a temporary file in the same directory, renamed
// over it) with mode 0600, so a reader never sees half a cache. The worker holds the
// cache in memory and reads the file again whenever it changes (another inode, size
// or modification time), which is how a new `worker login`, or an updated Kubernetes
// secret, reaches a running worker. When the file cannot be written (a read-only
// secret mount), the worker keeps refreshed tokens in memory and says so once.
type tokenCache struct {
	path   string
	strict bool // a failed write is an error (worker login), not a warning (the worker)
	log    zerolog.Logger

	mu         sync.Mutex
	data       []byte      // the cache as last read or exported; nil before either
	seen       os.FileInfo // the file as last read or written
	stripAT    bool        // give MSAL the cache without access tokens, forcing a refresh
	unwritable bool        // the last write failed (and was logged)
}

var _ cache.ExportReplace = (*tokenCache)(nil)

// Replace loads the cache into MSAL's memory before each use: from the file if it
// changed since it was last seen, else from memory.
func (c *tokenCache) Replace(_ context.Context, u cache.Unmarshaler, _ cache.ReplaceHints) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.strict { // worker login starts from an empty cache
		if err := c.loadIfChangedLocked(); err != nil {
			return err
		}
	}
	if c.data == nil {
		return nil
	}
	data := c.data
	if c.stripAT {
		data = withoutAccessTokens(data)
	}
	return u.Unmarshal(data)
}

// Export stores the cache MSAL has just changed: in memory, and in the file.
func (c *tokenCache) Export(_ context.Context, m cache.Marshaler, _ cache.ExportHints) error {
	b, err := m.Marshal()
	if err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.data = b
	fi, err := writeFileAtomic(c.path, b)
	switch {
	case err == nil:
		c.seen = fi
		if c.unwritable {
			c.unwritable = false
			c.log.Info().Str("token_cache", c.path).Msg("token cache written again: refreshed tokens are persisted")
		}
		return nil
	case c.strict:
		return err
	case !c.unwritable:
		c.unwritable = true
		c.log.Warn().Err(err).Str("token_cache", c.path).
			Msg("cannot write the token cache (a read-only mount?): refreshed tokens are kept in memory only, and a restarted worker starts again from the file")
	}
	return nil
}

// loadIfChangedLocked reads the file if it is not the one last read or written. A
// file that cannot be read leaves a cache already in memory in use.
func (c *tokenCache) loadIfChangedLocked() error {
	fi, err := os.Stat(c.path)
	switch {
	case err == nil && c.seen != nil && sameVersion(c.seen, fi):
		return nil
	case err == nil:
		return c.readLocked(fi)
	case c.data != nil, errors.Is(err, fs.ErrNotExist):
		return nil // keep memory (a secret being replaced), or no account yet
	default:
		return fmt.Errorf("token cache: %w", err)
	}
}

// readLocked reads the file whose metadata is fi, keeping memory if it cannot.
func (c *tokenCache) readLocked(fi os.FileInfo) error {
	b, err := os.ReadFile(c.path)
	if err == nil && !json.Valid(b) {
		err = fmt.Errorf("%s is not an MSAL token cache (not JSON): run `worker login`", c.path)
	}
	if err != nil {
		if c.data == nil {
			return fmt.Errorf("token cache: %w", err)
		}
		c.seen = fi // warn once per version of the file
		c.log.Warn().Err(err).Str("token_cache", c.path).Msg("cannot read the changed token cache: keeping the tokens in memory")
		return nil
	}
	c.data, c.seen = b, fi
	return nil
}

// reload reads the file even if its metadata looks unchanged, and reports whether it
// held something other than memory: worth a second try after a failed acquisition.
func (c *tokenCache) reload() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	fi, err := os.Stat(c.path)
	if err != nil {
		return false
	}
	b, err := os.ReadFile(c.path)
	if err != nil || !json.Valid(b) || bytes.Equal(b, c.data) {
		return false
	}
	c.data, c.seen = b, fi
	return true
}

// forceRefresh makes MSAL see no access token while on, so that a silent acquisition
// redeems the refresh token. Memory keeps the access tokens should that fail.
func (c *tokenCache) forceRefresh(on bool) {
	c.mu.Lock()
	c.stripAT = on
	c.mu.Unlock()
}

// redact removes every token the cache holds from s, and bounds its length.
func (c *tokenCache) redact(s string) string {
	c.mu.Lock()
	data := c.data
	c.mu.Unlock()
	var sections map[string]map[string]struct {
		Secret string `json:"secret"`
	}
	_ = json.Unmarshal(data, &sections) // best effort: the Account section has no secrets
	for _, entries := range sections {
		for _, e := range entries {
			if len(e.Secret) >= 8 {
				s = strings.ReplaceAll(s, e.Secret, "[redacted]")
			}
		}
	}
	return wire.Truncate(printable(s), maxErrorMessage)
}

// withoutAccessTokens returns the cache b without its AccessToken section. The
// section names are those of the cache format all MSAL libraries share.
func withoutAccessTokens(b []byte) []byte {
	var sections map[string]json.RawMessage
	if json.Unmarshal(b, &sections) != nil {
		return b
	}
	delete(sections, "AccessToken")
	out, err := json.Marshal(sections)
	if err != nil {
		return b
	}
	return out
}

// sameVersion reports whether a and b describe the same version of one file.
func sameVersion(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// writeFileAtomic replaces path with b, mode 0600, through a temporary file in the
// same directory, and returns the new file's metadata.
func writeFileAtomic(path string, b []byte) (os.FileInfo, error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("token cache: write: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("token cache: write: %w", err)
	}
	if d, err := os.Open(dir); err == nil { // make the rename itself durable
		_ = d.Sync()
		_ = d.Close()
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("token cache: write: %w", err)
	}
	return fi, nil
}
