package scheduler

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"

	"github.com/google/uuid"

	"github.com/opendms/dms/services/errs"
)

// scheduleIDVersion leads every encoded schedule id, so that the layout can
// change without old ids being misread.
const scheduleIDVersion = 1

// scheduleID names one scheduled message by where it is stored: its queue,
// its timer bucket (the hour it is due in) and its offset in the bucket's
// log. Clients see it as opaque base64url text.
type scheduleID struct {
	queueID string
	hour    int64
	offset  int64
}

func (id scheduleID) String() string {
	q, err := uuid.Parse(id.queueID)
	if err != nil {
		// Queue ids are UUIDs (catalog.IsQueueID); the engine never
		// builds an id for anything else.
		panic(fmt.Sprintf("scheduler: queue id %q is not a UUID", id.queueID))
	}
	buf := make([]byte, 0, 1+16+2*binary.MaxVarintLen64)
	buf = append(buf, scheduleIDVersion)
	buf = append(buf, q[:]...)
	buf = binary.AppendUvarint(buf, uint64(id.hour))
	buf = binary.AppendUvarint(buf, uint64(id.offset))
	return base64.RawURLEncoding.EncodeToString(buf)
}

func parseScheduleID(s string) (scheduleID, error) {
	invalid := errs.Wrapf(errs.ErrScheduleIDInvalid, "scheduler: %q is not a schedule id", s)
	buf, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(buf) < 1+16+2 || buf[0] != scheduleIDVersion {
		return scheduleID{}, invalid
	}
	q, _ := uuid.FromBytes(buf[1:17])
	rest := buf[17:]
	hour, n := binary.Uvarint(rest)
	if n <= 0 || hour > 1<<40 {
		return scheduleID{}, invalid
	}
	rest = rest[n:]
	offset, n := binary.Uvarint(rest)
	if n <= 0 || n != len(rest) || offset >= 1<<offsetBits {
		return scheduleID{}, invalid
	}
	return scheduleID{queueID: q.String(), hour: int64(hour), offset: int64(offset)}, nil
}
