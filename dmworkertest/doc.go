// Package dmworkertest helps a host unit-test its own code against a
// dmworker.Syncer with no MariaDB server.
//
// Binlog builds binlog events from table definitions (CREATE TABLE, parsed
// as the syncer parses DDL) and row values, with the files, offsets and
// MariaDB GTIDs a server would give them: transactions of inserts, updates
// and deletes, DDL, rotations. Its Reader replays them as a
// streamer.Reader, and SyncerOptions give a syncer that reader and the
// tables' starting definitions (dmworker.WithStartSchema), so that a
// syncer with a zero SyncerConfig.Upstream runs without a server:
//
//	b := dmworkertest.NewBinlog()
//	b.Define("shop", "CREATE DATABASE shop", "CREATE TABLE orders (id INT PRIMARY KEY, total DECIMAL(10,2))")
//	b.Begin().Insert("shop", "orders", []any{int64(1), "9.99"}).Commit()
//	sink := sinktest.NewMemSink()
//	s, _ := dmworker.NewSyncer(dmworker.SyncerConfig{Task: "t", Source: "up", Start: b.Start()}, sink, b.SyncerOptions()...)
//	go s.Run(ctx)
//	dmworkertest.WaitApplied(ctx, s, b.End())
//
// The in-memory checkpoint store is dmworker.MemoryCheckpointStore; the
// in-memory sink and the conformance suites for sinks and checkpoint
// stores are in package sinktest.
package dmworkertest
