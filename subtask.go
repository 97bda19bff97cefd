package dmworker

// This file will hold SubTask: one task on one source (snapshot, then
// incremental replication) with its stages. It is not built yet.
