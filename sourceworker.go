package dmworker

// This file will hold SourceWorker: one upstream source, its relay and its
// subtasks, driven directly or through etcd. It is not built yet.
