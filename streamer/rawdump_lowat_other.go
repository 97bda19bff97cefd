//go:build !linux

package streamer

import "errors"

// canSetRcvLowat is false where read batching is not known to work.
const canSetRcvLowat = false

func setRcvLowat(fd uintptr, n int) error { return nil }

// readNow is never called where read batching is off (dumpConn.rc is nil).
func readNow(fd uintptr, b []byte) (int, error) { return 0, errors.ErrUnsupported }
