// Package datakeys gives every project its own data encryption key
// (envelope encryption): the record batches of a project's logs are sealed
// with the project's data key, and the data key is stored only wrapped by a
// key-encryption key that a KeyProvider holds (the master key of
// -storage.encryption-key-file today; a KMS can be another provider).
//
// # Where the wrapped keys live
//
// In etcd, one record per project (/dms/data-keys/{project_id}, a
// dms.cluster.storage.v1.ProjectDataKeys), replaced whole by
// compare-and-swap. etcd is replicated by Raft, survives the loss of a
// minority of its members, and every node already reads it (the catalog
// lives there): a follower that becomes leader, or repairs a range from
// another copy, can always unwrap the key that sealed a batch it copied
// byte for byte. An internal replicated log would have worked too, but a
// key must be readable before any log is (a node opening its logs at
// start), and such a log would itself need a key.
//
// # Key ids
//
// A sealed batch names its key by a uint32 id (see the partitionlog
// format). Master keys use ids below 2^31; data keys get 2^31+1, 2^31+2, ...
// per project, never reused, so a log's keyring (the node's master keys,
// which open data sealed before per-project keys existed, plus the
// project's data keys) never holds two keys under one id, and after a
// rotation old batches still name the key that opens them.
//
// # Crypto-shredding
//
// Destroy replaces the project's record by one without key material and
// compacts etcd's history at that revision, so that no earlier version of
// the record can be read back through etcd. What a destroyed key sealed
// cannot be decrypted by anyone, with or without the master key. Two
// limits, both of etcd and both bounded: etcd's write-ahead log keeps the
// entries of earlier puts until its next snapshot purges those WAL files
// (--snapshot-count entries later), and its database file keeps freed pages
// until they are reused or the member is defragmented. An operator who
// must rule those out defragments every member after a destroy, or uses a
// KMS provider whose key-encryption key is per project and destroyed with
// it.
package datakeys
