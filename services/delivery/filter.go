package delivery

import (
	"google.golang.org/protobuf/proto"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// sameFilter reports whether two normalized tag filters select the same
// messages.
func sameFilter(a, b *dmsv1.TagFilter) bool { return proto.Equal(a, b) }
