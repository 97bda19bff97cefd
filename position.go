package dmworker

import "github.com/dmworker/dmworker/streamer"

// Position is a place in an upstream's binlog: file name, offset and the GTID
// set executed up to it. It is streamer.Position; see there for its text and
// JSON forms, its order and its validity rules.
type Position = streamer.Position

// ParsePosition parses the text form that Position.String prints, such as
// "mysql-bin.000003:1234 mariadb-gtid=0-1-100". Errors wrap
// streamer.ErrInvalidPosition. See streamer.ParsePosition for the grammar.
func ParsePosition(s string) (Position, error) {
	return streamer.ParsePosition(s)
}
