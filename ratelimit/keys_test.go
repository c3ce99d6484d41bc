package ratelimit

import (
	"testing"
)

func TestKeyToken(t *testing.T) {
	kv := newFleet(t, 0, Config{}).kv
	for _, tc := range []struct {
		id, want string
	}{
		{"0a6b6a4e-1111-4c57-9a53-0b1f2a3c4d5e", "0a6b6a4e-1111-4c57-9a53-0b1f2a3c4d5e"},
		{"0A6B6A4E-1111-4C57-9A53-0B1F2A3C4D5E", "0a6b6a4e-1111-4c57-9a53-0b1f2a3c4d5e"},
		{"contoso.onmicrosoft.com", "=Y29udG9zby5vbm1pY3Jvc29mdC5jb20"},
		{"a=b", "=YT1i"},
		{"=YT1i", "=PXl0MWk"},
		{"tenant_1", "tenant_1"},
		{"a b/c*>", "=YSBiL2MqPg"},
		{"ünïcode", "=w7xuw69jb2Rl"},
		{".", "=Lg"},
	} {
		t.Run(tc.id, func(t *testing.T) {
			got := keyToken(tc.id)
			if got != tc.want {
				t.Errorf("keyToken(%q) = %q, want %q", tc.id, got, tc.want)
			}
			for _, key := range []string{windowKey(got, got), pauseKey(got, got)} {
				if _, err := kv.PutString(t.Context(), key, "x"); err != nil {
					t.Errorf("the bucket refuses key %q: %v", key, err)
				}
			}
		})
	}
}
