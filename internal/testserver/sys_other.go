//go:build !linux

package testserver

import (
	"context"
	"syscall"
)

// sysProcAttr: outside Linux there is no parent-death signal; the server is
// stopped by Close or the test cleanup only.
func sysProcAttr() *syscall.SysProcAttr {
	return nil
}

// lockFile is a no-op outside Linux: concurrent template builds then both
// run, and the atomic rename still lets only one win.
func lockFile(context.Context, string) (func(), error) {
	return func() {}, nil
}
