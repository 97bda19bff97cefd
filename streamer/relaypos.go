package streamer

import (
	"cmp"
	"fmt"
)

// RelayPos is a place in a relay directory: a subdirectory, a binlog file in
// it and an offset in that file.
type RelayPos struct {
	SubDir string // subdirectory name, "<server-id>.000002"
	Name   string // binlog file name, "mysql-bin.000123"
	Offset uint64
}

// String prints the position as "<subdir>/<file>:<offset>".
func (p RelayPos) String() string {
	return fmt.Sprintf("%s/%s:%d", p.SubDir, p.Name, p.Offset)
}

// IsZero reports whether p is the zero RelayPos.
func (p RelayPos) IsZero() bool { return p == RelayPos{} }

// Compare orders relay positions: by subdirectory sequence, then file, then
// offset. Subdirectory names that do not parse sort first.
func (p RelayPos) Compare(o RelayPos) int {
	_, a, _ := ParseSubDirName(p.SubDir)
	_, b, _ := ParseSubDirName(o.SubDir)
	if c := cmp.Compare(a, b); c != 0 {
		return c
	}
	if c := compareNames(p.Name, o.Name); c != 0 {
		return c
	}
	return cmp.Compare(p.Offset, o.Offset)
}

// RelayTail is what a reader of a relay directory needs from a live Relay in
// the same process: how far the relay has durably written, and a way to wait
// for that to move without polling. dmworker.Relay implements it.
type RelayTail interface {
	// Relayed returns the end of the durable relay data and a channel
	// that is closed when that end moves (or the relay stops). Data up to
	// the end is complete and will not change.
	Relayed() (RelayPos, <-chan struct{})
}

// RelayRegistry lets readers of a relay directory hold back its purge:
// nothing at or after a registered position is removed. dmworker.Relay
// implements it.
type RelayRegistry interface {
	// RegisterReader records that the named reader still needs everything
	// from pos on. Registering a name again replaces its position.
	RegisterReader(name string, pos RelayPos) (ReaderLease, error)
}

// ReaderLease is a reader's registration with a relay.
type ReaderLease interface {
	// Advance moves the oldest position the reader needs forward; a
	// position behind the current one is ignored.
	Advance(pos RelayPos)
	// Release ends the registration.
	Release()
}
