package plugins

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Hash names a module by the SHA-256 of its bytes: "sha256:<64 lowercase hex>".
type Hash string

const hashPrefix = "sha256:"

// HashOf returns the Hash of wasm.
func HashOf(wasm []byte) Hash {
	sum := sha256.Sum256(wasm)
	return Hash(hashPrefix + hex.EncodeToString(sum[:]))
}

// ParseHash validates s as a Hash. Upper-case hex is accepted and normalised.
func ParseHash(s string) (Hash, error) {
	hexPart, ok := strings.CutPrefix(s, hashPrefix)
	if !ok {
		return "", fmt.Errorf("plugins: module hash %q: want the form sha256:<64 hex digits>", s)
	}
	if len(hexPart) != 64 {
		return "", fmt.Errorf("plugins: module hash %q: want 64 hex digits after sha256:, got %d", s, len(hexPart))
	}
	hexPart = strings.ToLower(hexPart)
	if _, err := hex.DecodeString(hexPart); err != nil {
		return "", fmt.Errorf("plugins: module hash %q: %v", s, err)
	}
	return Hash(hashPrefix + hexPart), nil
}

// hex returns the 64 hex digits of h (used as the file name in the store).
func (h Hash) hex() string { return strings.TrimPrefix(string(h), hashPrefix) }

// short returns a prefix of h that is enough for a person to recognise it.
func (h Hash) short() string {
	if len(h) > len(hashPrefix)+12 {
		return string(h[:len(hashPrefix)+12])
	}
	return string(h)
}
