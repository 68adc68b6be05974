package datakeys

import (
	"context"
	"crypto/rand"
	"fmt"
	"strconv"

	"github.com/opendms/dms/services/storage/partitionlog"
)

// KeyProvider holds key-encryption keys and wraps data keys with them. The
// data key never leaves the process unwrapped; the provider may be remote
// (a KMS), so both calls take a context. aad binds a wrapped key to its
// project and id: unwrapping it under another name fails.
type KeyProvider interface {
	// Name identifies the provider in stored keys ("file").
	Name() string
	// Wrap seals key and returns the id of the key-encryption key used and
	// the wrapped bytes.
	Wrap(ctx context.Context, key, aad []byte) (kekID string, wrapped []byte, err error)
	// Unwrap opens what Wrap returned.
	Unwrap(ctx context.Context, kekID string, wrapped, aad []byte) ([]byte, error)
}

// MasterKeyProvider wraps data keys with the active master key of a
// keyring (the storage key file), AES-256-GCM with a random nonce; any key
// of the ring unwraps what it wrapped, so master keys rotate the way they
// always have (add a key, keep the old ones).
type MasterKeyProvider struct {
	ring *partitionlog.Keyring
}

// NewMasterKeyProvider returns a provider over ring (not nil).
func NewMasterKeyProvider(ring *partitionlog.Keyring) *MasterKeyProvider {
	return &MasterKeyProvider{ring: ring}
}

// ProviderFile is the name of MasterKeyProvider.
const ProviderFile = "file"

// Name implements KeyProvider.
func (p *MasterKeyProvider) Name() string { return ProviderFile }

const nonceSize = 12

// Wrap implements KeyProvider: nonce, then the sealed key and its tag.
func (p *MasterKeyProvider) Wrap(_ context.Context, key, aad []byte) (string, []byte, error) {
	id, aead := p.ring.Active()
	out := make([]byte, nonceSize, nonceSize+len(key)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return "", nil, fmt.Errorf("datakeys: wrapping: %w", err)
	}
	out = aead.Seal(out, out[:nonceSize], key, aad)
	return strconv.FormatUint(uint64(id), 10), out, nil
}

// Unwrap implements KeyProvider.
func (p *MasterKeyProvider) Unwrap(_ context.Context, kekID string, wrapped, aad []byte) ([]byte, error) {
	id, err := strconv.ParseUint(kekID, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("datakeys: master key id %q is not a number", kekID)
	}
	aead, ok := p.ring.Lookup(uint32(id))
	if !ok {
		return nil, fmt.Errorf("datakeys: master key %d, which wrapped a data key, is not in the key file", id)
	}
	if len(wrapped) < nonceSize+aead.Overhead() {
		return nil, fmt.Errorf("datakeys: a wrapped key is %d bytes, too short", len(wrapped))
	}
	key, err := aead.Open(nil, wrapped[:nonceSize], wrapped[nonceSize:], aad)
	if err != nil {
		return nil, fmt.Errorf("datakeys: master key %d does not unwrap the data key (a different key under that id, or a record changed)", id)
	}
	return key, nil
}
