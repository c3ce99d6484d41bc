package idempotency_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/idempotency"
)

func TestKVKey(t *testing.T) {
	// The bucket accepts only these characters, without a leading or
	// trailing dot.
	valid := regexp.MustCompile(`^k\.[0-9a-f]{64}$`)
	seen := map[string]string{}
	for _, key := range []string{
		"INC0012345/2d6a0c1e-5f1b-4c8e-9d3a-7b2e1f0a9c8d",
		"with spaces and * > wildcards",
		"..dots..",
		"ünïcödé ключ 鍵",
		"INC0012345",
		"inc0012345",
		strings.Repeat("x", idempotency.MaxKeyLen),
	} {
		t.Run(key[:min(len(key), 20)], func(t *testing.T) {
			if err := idempotency.ValidateKey(key); err != nil {
				t.Fatalf("ValidateKey: %v", err)
			}
			got := idempotency.KVKey(key)
			if !valid.MatchString(got) {
				t.Errorf("KVKey = %q, not a valid bucket key", got)
			}
			if other, dup := seen[got]; dup {
				t.Errorf("KVKey(%q) = KVKey(%q)", key, other)
			}
			seen[got] = key
			if idempotency.KVKey(key) != got {
				t.Error("KVKey is not stable")
			}
		})
	}
}

func TestInvalidKeys(t *testing.T) {
	srv := startBucket(t)
	s := newStore(t, srv, "worker-a", time.Minute)
	for _, tc := range []struct{ name, key string }{
		{"empty", ""},
		{"too long", strings.Repeat("x", idempotency.MaxKeyLen+1)},
		{"NUL", "INC\x00123"},
		{"newline", "INC\n123"},
		{"not UTF-8", "INC\xff123"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := idempotency.ValidateKey(tc.key); !errors.Is(err, idempotency.ErrInvalidKey) {
				t.Errorf("ValidateKey = %v, want ErrInvalidKey", err)
			}
			if _, err := s.Acquire(testCtx(t), tc.key, "job-1"); !errors.Is(err, idempotency.ErrInvalidKey) {
				t.Errorf("Acquire = %v, want ErrInvalidKey", err)
			}
		})
	}
}

func TestBucketConfig(t *testing.T) {
	for _, tc := range []struct {
		name         string
		ttl          time.Duration
		replicas     int
		wantTTL      time.Duration
		wantReplicas int
	}{
		{"defaults", 0, 0, 24 * time.Hour, 1},
		{"explicit", time.Hour, 3, time.Hour, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := idempotency.BucketConfig("recoverpasscode_keys", tc.ttl, tc.replicas)
			if cfg.Bucket != "recoverpasscode_keys" || cfg.TTL != tc.wantTTL || cfg.Replicas != tc.wantReplicas || cfg.History != 1 {
				t.Errorf("BucketConfig = %+v", cfg)
			}
			if int(cfg.MaxValueSize) <= idempotency.MaxOutcomeLen {
				t.Errorf("MaxValueSize %d leaves no room around an outcome of %d bytes", cfg.MaxValueSize, idempotency.MaxOutcomeLen)
			}
		})
	}
}
