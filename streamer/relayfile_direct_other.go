//go:build !linux

package streamer

// oDirect is the open flag for direct I/O (0 where the platform has none:
// DirectIO then does nothing).
const oDirect = 0
