//go:build !linux

package streamer

// canSetRcvLowat is false where read batching is not known to work.
const canSetRcvLowat = false

func setRcvLowat(fd uintptr, n int) error { return nil }
