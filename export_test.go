package dmworker

// SetWatchHook makes w call f just before it starts watching etcd at
// revision rev+1 (f gets rev), so that a test can compact etcd past the
// watched revision deterministically. Set it before Run.
func SetWatchHook(w *SourceWorker, f func(rev int64)) { w.testHookBeforeWatch = f }
