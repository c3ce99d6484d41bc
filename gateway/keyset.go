package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// keyRefetch is how soon after one fetch of the tenant's signing keys a
// token of an unknown key may cause the next. Anyone can send a token
// naming a random key id; without a bound each would cost a request to
// Entra ID. Entra ID publishes a key well before it signs with it, so a
// rotation is still picked up at the first token of the new key, or at
// worst one interval later.
const keyRefetch = time.Minute

// maxKeySet bounds the size of a key set document read.
const maxKeySet = 1 << 20

// keySet is the tenant's published signing keys, as go-oidc's KeySet: read
// at the first token, kept, and read again when a token names a key id
// that is not among them, but at most once per interval (after a failed
// read, once per discoveryRetry). A token of a known key id that does not
// verify never causes a read: a key id names one key. It is safe for
// concurrent use; concurrent tokens of an unknown key share one read.
type keySet struct {
	url    string
	client *http.Client
	every  time.Duration

	fetching chan struct{} // one slot: the read under way

	mu        sync.Mutex
	now       func() time.Time
	keys      []jose.JSONWebKey
	reads     int       // read attempts so far
	fetchedAt time.Time // when the last read began
	err       error     // the last read's failure, nil when it worked
}

var _ oidc.KeySet = (*keySet)(nil)

func newKeySet(url string, client *http.Client, every time.Duration) *keySet {
	return &keySet{url: url, client: client, every: every, now: time.Now, fetching: make(chan struct{}, 1)}
}

// VerifySignature returns the payload of a token signed by one of the
// tenant's keys. go-oidc's verifier has checked the algorithm already.
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nil, fmt.Errorf("malformed jwt: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("the token has more than one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	k.mu.Lock()
	keys, reads := k.keys, k.reads
	k.mu.Unlock()
	payload, known := verifyWith(jws, kid, keys)
	switch {
	case payload != nil:
		return payload, nil
	case known:
		return nil, errors.New("not signed by the key it names")
	}
	keys, err = k.refresh(ctx, reads)
	if err != nil {
		return nil, err
	}
	if payload, _ = verifyWith(jws, kid, keys); payload == nil {
		return nil, errors.New("signed by none of the tenant's published keys")
	}
	return payload, nil
}

// verifyWith verifies jws with the keys of id kid, and reports whether
// kid is among them: nil and true means the signature is not by the key it
// names. An empty kid tries every key, and is never known.
func verifyWith(jws *jose.JSONWebSignature, kid string, keys []jose.JSONWebKey) (payload []byte, known bool) {
	for i := range keys {
		if kid != "" && keys[i].KeyID != kid {
			continue
		}
		known = kid != ""
		if p, err := jws.Verify(&keys[i]); err == nil {
			return p, true
		}
	}
	return nil, known
}

// refresh reads the keys again unless the interval since the last read
// has not passed, or a read began since the caller looked (seen is the
// count of reads it saw): then it returns the keys at hand, and the last
// read's error.
func (k *keySet) refresh(ctx context.Context, seen int) ([]jose.JSONWebKey, error) {
	select {
	case k.fetching <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-k.fetching }()

	k.mu.Lock()
	now, wait := k.now(), k.every
	if k.err != nil {
		wait = min(wait, discoveryRetry)
	}
	if k.reads != seen || k.reads > 0 && now.Sub(k.fetchedAt) < wait {
		keys, err := k.keys, k.err
		k.mu.Unlock()
		return keys, err
	}
	k.reads++
	k.fetchedAt = now
	k.mu.Unlock()

	// The read serves every waiting token: one caller's cancel must not
	// fail it.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	keys, err := k.fetch(rctx)

	k.mu.Lock()
	defer k.mu.Unlock()
	k.err = err
	if err != nil {
		return nil, err
	}
	k.keys = keys
	return keys, nil
}

// fetch reads the key set document: the keys go-jose can use, skipping
// any of another kind.
func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching keys: %w", err)
	}
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching keys: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching keys: %s", resp.Status)
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxKeySet)).Decode(&doc); err != nil {
		return nil, fmt.Errorf("fetching keys: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, raw := range doc.Keys {
		var key jose.JSONWebKey
		if json.Unmarshal(raw, &key) == nil && key.Valid() && key.IsPublic() {
			keys = append(keys, key)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("fetching keys: the key set holds no usable key")
	}
	return keys, nil
}
