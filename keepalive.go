package dmworker

// This file will hold KeepAlive: the worker's lease in etcd. It is not built
// yet.
