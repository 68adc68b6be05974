package testserver

import (
	"testing"

	"github.com/opendms/dms/services/testserver/testetcd"
)

// StartEtcd runs an etcd of its own in the test process, on free ports in
// a temporary directory, for clusters of several servers that must outlive
// any one of them; t.Cleanup stops it. It returns its client endpoint.
func StartEtcd(t testing.TB) string { return testetcd.Start(t) }
