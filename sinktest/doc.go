// Package sinktest helps test dmworker.Sink implementations and the code that
// drives them.
//
// MemSink is an in-memory dmworker.CheckpointSink that keeps the rows, DDLs
// and checkpoints it is given and honours the Sink contract to the letter: a
// batch is applied whole or not at all, safe mode makes replays idempotent,
// a duplicate key in normal mode is an error (as it would be in MySQL, so a
// replay bug shows up), and a checkpoint from an older epoch is refused. It
// checks that every value has the Go type the contract gives its column type.
//
// RunSinkConformance runs the same suite of behaviour checks against any
// Sink, through a small Harness that says how to make one, how to create a
// table in it and how to read a table back. Run it from your sink's tests:
//
//	func TestConformance(t *testing.T) {
//		sinktest.RunSinkConformance(t, sinktest.Harness{
//			New:  func(t *testing.T) dmworker.Sink { return newMySink(t) },
//			Rows: readRows,
//		})
//	}
//
// A sink that keeps no tables (an append-only event log, a queue) declares
// what it does in Harness.Capabilities (Log) and gives Harness.Log instead of
// Rows: the suite runs the subtests that apply to it.
//
// RunCheckpointStoreConformance does the same for a dmworker.CheckpointStore.
// For tests of a syncer with no server, see package dmworkertest.
//
// CheckRow, CompareValues and SortRows are the helpers the suite itself uses
// to check value types and to compare tables in a canonical order.
package sinktest
