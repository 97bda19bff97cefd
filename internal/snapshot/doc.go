// Package snapshot is the machinery of the snapshot unit (modes full and
// all): opening a consistent snapshot on several connections at one binlog
// point (Open), planning each table's chunks (Plan: integer key ranges read
// in parallel, keyset pages for other keys, the whole table without one),
// and reading rows with the binary protocol into the values the Sink
// contract gives each column type (Read, Value), equal to what the syncer
// decodes from row events for the same rows.
package snapshot
