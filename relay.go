package dmworker

// This file will hold Relay: the durable local copy of an upstream's binlog
// in DM's relay directory layout (see DESIGN.md). It is not built yet; the
// relay directory format will live in package streamer beside its reader.
