package amqp

import (
	"fmt"
	"strconv"
)

func parseUint32(s string, into *uint32) error {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return err
	}
	if v < 4096 || v > 1<<20 {
		return fmt.Errorf("%d is not in [4096, 1048576]", v)
	}
	*into = uint32(v)
	return nil
}
