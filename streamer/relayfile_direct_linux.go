package streamer

import "syscall"

// oDirect is the open flag for direct I/O (0 where the platform has none).
const oDirect = syscall.O_DIRECT
