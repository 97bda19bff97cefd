package streamer

import "syscall"

// canSetRcvLowat: Linux wakes a TCP socket's readers only once its
// SO_RCVLOWAT bytes wait, and a non-blocking read still returns what there
// is.
const canSetRcvLowat = true

func setRcvLowat(fd uintptr, n int) error {
	return syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, n)
}

// readNow reads from the socket fd without waiting: syscall.EAGAIN when
// nothing is there.
func readNow(fd uintptr, b []byte) (int, error) {
	return syscall.Read(int(fd), b)
}
