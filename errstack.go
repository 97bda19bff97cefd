package dmworker

import (
	stderrors "errors"
	"fmt"
	"log/slog"

	"github.com/pingcap/errors"
)

// withStack returns err annotated (github.com/pingcap/errors) with the stack
// of the goroutine that calls it, unless something in err's chain carries a
// stack already. Errors get one where they cross into or out of this
// package: where a unit fails (a SyncError, a relay or snapshot fault, a
// subtask's pause), and where Run and the constructors return. The message,
// errors.Is and errors.As are those of err.
func withStack(err error) error {
	if err == nil || stackOf(err) != nil {
		return err
	}
	return errors.WithStack(err)
}

// stackOf returns the first stack in err's chain, or nil.
func stackOf(err error) errors.StackTracer {
	var st errors.StackTracer
	if stderrors.As(err, &st) && !st.Empty() {
		return st
	}
	return nil
}

// ErrorStack returns the stack recorded in err's chain where err crossed
// into or out of this package (one frame a line, function then file:line),
// or "" when it carries none. Logs of this package write it beside the
// error's message, under the key "stack".
func ErrorStack(err error) string {
	st := stackOf(err)
	if st == nil {
		return ""
	}
	return fmt.Sprintf("%+v", st.StackTrace())
}

// errAttr is the log attribute for err: its message under "error" and, when
// it carries one, its stack under "stack".
func errAttr(err error) slog.Attr {
	if err == nil {
		return slog.String("error", "<nil>")
	}
	if s := ErrorStack(err); s != "" {
		return slog.Group("", slog.String("error", err.Error()), slog.String("stack", s))
	}
	return slog.String("error", err.Error())
}
