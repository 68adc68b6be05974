package storage

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/opendms/dms/services/datakeys"
	"github.com/opendms/dms/services/storage/partitionlog"
)

// Encryption at rest is off unless master keys are given, in a key file
// (-storage.encryption-key-file) or in the environment variable keysEnv, in
// the format of partitionlog.ParseKeyring: `id:base64key` entries, the last
// one the active key that encrypts new batches.
//
// Logs are opened lazily, so a wrong or missing key would otherwise surface
// only when a queue is first touched. Instead the storage directory keeps a
// fingerprint (partitionlog.Keyring.Fingerprint) of every key that has
// encrypted data here, and NewEngine checks the given keys against it:
// dmsd does not start with a key missing or different from the one the data
// was written with. Each log checks its own batches again when it is opened.
//
// The master keys seal the logs that belong to no project and wrap the
// projects' data keys, which seal everything else (datakeys.go).
const (
	keysEnv             = "DMS_STORAGE_KEYS"
	fingerprintFileName = "key-fingerprints"
)

// LoadKeyring returns the master keys configured by cfg or the
// environment, or nil when encryption is off. Their ids must be below
// datakeys.FirstKeyID: the ids above name project data keys.
func LoadKeyring(cfg Config, logger *slog.Logger) (*partitionlog.Keyring, error) {
	ring, err := loadKeyring(cfg, os.LookupEnv, logger)
	if err != nil || ring == nil {
		return ring, err
	}
	if err := datakeys.ValidateMasterKeyIDs(ring.IDs()); err != nil {
		return nil, fmt.Errorf("storage: loading encryption keys: %w", err)
	}
	return ring, nil
}

// loadKeyring returns the keys configured by cfg or the environment, or nil
// when encryption is off.
func loadKeyring(cfg Config, lookupEnv func(string) (string, bool), logger *slog.Logger) (*partitionlog.Keyring, error) {
	env, inEnv := lookupEnv(keysEnv)
	inEnv = inEnv && strings.TrimSpace(env) != ""
	switch {
	case cfg.EncryptionKeyFile != "" && inEnv:
		return nil, fmt.Errorf("storage: encryption keys given twice, by -storage.encryption-key-file and by %s; give one", keysEnv)
	case cfg.EncryptionKeyFile != "":
		if fi, err := os.Stat(cfg.EncryptionKeyFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
			logger.Warn("storage: encryption key file is readable by other users", "file", cfg.EncryptionKeyFile, "mode", fi.Mode().Perm().String())
		}
		ring, err := partitionlog.ReadKeyringFile(cfg.EncryptionKeyFile)
		if err != nil {
			return nil, fmt.Errorf("storage: loading encryption keys: %w", err)
		}
		return ring, nil
	case inEnv:
		ring, err := partitionlog.ParseKeyring(env)
		if err != nil {
			return nil, fmt.Errorf("storage: loading encryption keys from %s: %w", keysEnv, err)
		}
		return ring, nil
	}
	return nil, nil
}

// checkKeyFingerprints fails if ring (nil: encryption off) lacks a key that
// encrypted data in dir, or holds a different key under its id, and records
// the fingerprint of the active key before anything is encrypted with it.
func checkKeyFingerprints(dir string, ring *partitionlog.Keyring) error {
	path := filepath.Join(dir, fingerprintFileName)
	stored, err := readFingerprints(path)
	if err != nil {
		return err
	}
	ids := make([]uint32, 0, len(stored))
	for id := range stored {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if ring == nil {
		if len(ids) > 0 {
			return fmt.Errorf("storage: data in %s is encrypted (key ids %v) but no encryption keys are given; set -storage.encryption-key-file or %s", dir, ids, keysEnv)
		}
		return nil
	}
	for _, id := range ids {
		switch fp := ring.Fingerprint(id); {
		case fp == "":
			return fmt.Errorf("storage: key id %d encrypted data in %s but is missing from the encryption keys given; "+
				"add it back (or, once no data encrypted with it is retained, delete its line from %s)", id, dir, path)
		case fp != stored[id]:
			return fmt.Errorf("storage: key id %d given is not the key that encrypted data in %s (fingerprint %s, expected %s); check the key file", id, dir, fp, stored[id])
		}
	}
	active, _ := ring.Active()
	if _, ok := stored[active]; ok {
		return nil
	}
	stored[active] = ring.Fingerprint(active)
	return writeFingerprints(path, stored)
}

// readFingerprints reads lines `id fingerprint`; a missing file is empty.
func readFingerprints(path string) (map[uint32]string, error) {
	out := map[uint32]string{}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("storage: reading key fingerprints: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		id, err := strconv.ParseUint(fields[0], 10, 32)
		if len(fields) != 2 || err != nil {
			return nil, fmt.Errorf("storage: %s line %d: want `id fingerprint`", path, n)
		}
		out[uint32(id)] = fields[1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("storage: reading key fingerprints: %w", err)
	}
	return out, nil
}

// writeFingerprints replaces the file atomically and durably: once a batch is
// encrypted with a key, its fingerprint must survive a crash.
func writeFingerprints(path string, fps map[uint32]string) error {
	ids := make([]uint32, 0, len(fps))
	for id := range fps {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var b strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&b, "%d %s\n", id, fps[id])
	}
	tmp := path + ".tmp"
	err := writeFileSync(tmp, []byte(b.String()))
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		return fmt.Errorf("storage: recording key fingerprints: %w", err)
	}
	return nil
}

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
