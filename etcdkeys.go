package dmworker

import (
	"path"
	"strings"
)

// The etcd key layout. Every key lives under one prefix (DefaultEtcdPrefix
// unless WithEtcdPrefix says otherwise); values are JSON unless noted.
//
//	<prefix>worker/<worker>                  KeepAlive: the worker is alive. Put under the worker's
//	                                         lease, so it disappears when the worker dies. Value:
//	                                         WorkerInfo.
//	<prefix>bound/<worker>                   Coordinator: the source bound to the worker. Value:
//	                                         SourceBinding. The key's ModRevision is the binding's
//	                                         epoch: it grows with every (re)binding, so a worker
//	                                         writing under an older binding is fenced off.
//	<prefix>source/<source>                  Host: the source's configuration (SourceConfig), written
//	                                         by PutSourceConfig: the password sealed (SealedPassword)
//	                                         or referenced (PasswordRef), never in plain text.
//	<prefix>subtask/<source>/<task>          Host: a subtask's configuration (SubTaskConfig).
//	<prefix>stage/relay/<source>             Host: the relay's expected stage, the text
//	                                         "Running" or "Paused" (no key: Running when the
//	                                         source config turns relay on). Writing it again
//	                                         runs a relay that a fault stopped once more.
//	<prefix>stage/subtask/<source>/<task>    Host: a subtask's expected stage, the text
//	                                         "Running", "Paused" or "Stopped" (no key: Running).
//	<prefix>status/<worker>/relay            Worker: its relay's status (RelayReport).
//	<prefix>status/<worker>/subtask/<task>   Worker: a subtask's status (SubTaskReport).
//	<prefix>coordinator/<lease>              Coordinator: the election among coordinators, in
//	                                         the layout of etcd's concurrency.Election: one key
//	                                         per coordinator, named by its lease in hex, put
//	                                         under that lease, value "<host>:<pid>"; the lowest
//	                                         create revision leads.
//	<prefix>checkpoint/<task>/<source>       EtcdCheckpointStore: checkpoints.
//	<prefix>shardlock/<task>/<target>        NewEtcdShardGroup, pessimistic: a downstream table's
//	                                         DDL lock (steps, shards reached, applied marks).
//	<prefix>shardowner/<task>/<target>       NewEtcdShardGroup: the group applying (pessimistic) or
//	                                         deciding (optimistic) a DDL of the target, under its
//	                                         lease.
//	<prefix>shardopt/<task>/<target>         NewEtcdShardGroup, optimistic: each shard's schema, the
//	                                         downstream table, the drops held back, the statement
//	                                         being applied.
//	<prefix>shardoptreg/<task>/<source>      NewEtcdShardGroup, optimistic: a source registered.
//	                                         Every shard write of a SourceWorker's subtask compares
//	                                         bound/<worker>'s ModRevision with its epoch.
//
// Names (worker, source, task) must be non-empty and hold no "/".
// EtcdHost writes the host's keys (and a binding, where no Coordinator
// does); EtcdKeys names every key for a host that reads or watches them.
//
// How a SourceWorker reads them: it reads bound/<worker>, then the source's
// config, subtask configs and stage keys at that one revision, applies them,
// and watches those keys from the next revision; after any change, watch
// failure or compaction it reads them all again and reconciles. A subtask
// runs for each subtask/<source>/<task> (its Name may be omitted: the key
// names it); a stage key without a config is ignored. Writing a stage key
// again with the same value applies it again: "Running" resumes a subtask
// an error paused. "Stopped" stops a subtask and keeps it stopped;
// deleting its config removes it and its status key. A new ModRevision of
// the bound key (a rebinding, even to the same source) restarts the
// worker's subtasks under the new epoch; a subtask whose stored checkpoint
// is from an older epoch first takes the task over (it stores the
// checkpoint under its epoch, which fences off the old writer, and replays
// up to the upstream's current end in safe mode). Status keys are written
// within a second of a stage change and every WithStatusInterval; a worker
// that stops serving a subtask deletes its key, and Close leaves a last
// report (stage Stopped).
const (
	keyWorker       = "worker/"
	keyBound        = "bound/"
	keySource       = "source/"
	keySubtask      = "subtask/"
	keyRelayStage   = "stage/relay/"
	keySubtaskStage = "stage/subtask/"
	keyStatus       = "status/"
	keyCoordinator  = "coordinator/"
)

// etcdKeys builds the keys of the layout under one prefix.
type etcdKeys struct{ prefix string }

func newEtcdKeys(prefix string) etcdKeys {
	if prefix == "" {
		prefix = DefaultEtcdPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return etcdKeys{prefix}
}

func (k etcdKeys) worker(name string) string { return k.prefix + keyWorker + name }
func (k etcdKeys) workers() string           { return k.prefix + keyWorker }
func (k etcdKeys) bound(worker string) string {
	return k.prefix + keyBound + worker
}
func (k etcdKeys) bounds() string            { return k.prefix + keyBound }
func (k etcdKeys) source(name string) string { return k.prefix + keySource + name }
func (k etcdKeys) sources() string           { return k.prefix + keySource }
func (k etcdKeys) subtasks(source string) string {
	return k.prefix + keySubtask + source + "/"
}
func (k etcdKeys) subtask(source, task string) string {
	return k.prefix + keySubtask + source + "/" + task
}
func (k etcdKeys) relayStage(source string) string { return k.prefix + keyRelayStage + source }
func (k etcdKeys) subtaskStages(source string) string {
	return k.prefix + keySubtaskStage + source + "/"
}
func (k etcdKeys) subtaskStage(source, task string) string {
	return k.prefix + keySubtaskStage + source + "/" + task
}
func (k etcdKeys) relayStatus(worker string) string {
	return k.prefix + keyStatus + worker + "/relay"
}
func (k etcdKeys) subtaskStatus(worker, task string) string {
	return k.prefix + keyStatus + worker + "/subtask/" + task
}
func (k etcdKeys) coordinator() string { return k.prefix + keyCoordinator }

// EtcdKeys names the keys of the layout above under one prefix, for a host
// that watches or reads them itself (status reports, bindings). The zero
// value uses DefaultEtcdPrefix. Names are not checked: give valid ones (see
// the layout).
type EtcdKeys struct{ k etcdKeys }

// NewEtcdKeys returns the key names under prefix ("" for DefaultEtcdPrefix;
// a missing trailing "/" is added), the prefix WithEtcdPrefix gives the
// workers, keepalives and coordinators.
func NewEtcdKeys(prefix string) EtcdKeys { return EtcdKeys{newEtcdKeys(prefix)} }

func (k EtcdKeys) keys() etcdKeys {
	if k.k.prefix == "" {
		return newEtcdKeys("")
	}
	return k.k
}

// Prefix is the prefix every key starts with, ending in "/".
func (k EtcdKeys) Prefix() string { return k.keys().prefix }

// Worker is a worker's keepalive key, <prefix>worker/<worker>; Workers is
// the prefix of them all.
func (k EtcdKeys) Worker(worker string) string { return k.keys().worker(worker) }

// Workers is the prefix of every worker's keepalive key.
func (k EtcdKeys) Workers() string { return k.keys().workers() }

// Bound is a worker's binding key, <prefix>bound/<worker> (value
// SourceBinding; its ModRevision is the binding's epoch).
func (k EtcdKeys) Bound(worker string) string { return k.keys().bound(worker) }

// Bounds is the prefix of every binding key.
func (k EtcdKeys) Bounds() string { return k.keys().bounds() }

// Source is a source's config key, <prefix>source/<source>.
func (k EtcdKeys) Source(source string) string { return k.keys().source(source) }

// Sources is the prefix of every source config key.
func (k EtcdKeys) Sources() string { return k.keys().sources() }

// SubTask is a subtask's config key, <prefix>subtask/<source>/<task>.
func (k EtcdKeys) SubTask(source, task string) string { return k.keys().subtask(source, task) }

// SubTasks is the prefix of the subtask config keys of a source.
func (k EtcdKeys) SubTasks(source string) string { return k.keys().subtasks(source) }

// RelayStage is a source's relay stage key, <prefix>stage/relay/<source>.
func (k EtcdKeys) RelayStage(source string) string { return k.keys().relayStage(source) }

// SubTaskStage is a subtask's stage key,
// <prefix>stage/subtask/<source>/<task>.
func (k EtcdKeys) SubTaskStage(source, task string) string {
	return k.keys().subtaskStage(source, task)
}

// SubTaskStages is the prefix of the subtask stage keys of a source.
func (k EtcdKeys) SubTaskStages(source string) string { return k.keys().subtaskStages(source) }

// RelayStatus is where a worker reports its relay (RelayReport),
// <prefix>status/<worker>/relay.
func (k EtcdKeys) RelayStatus(worker string) string { return k.keys().relayStatus(worker) }

// SubTaskStatus is where a worker reports a subtask (SubTaskReport),
// <prefix>status/<worker>/subtask/<task>.
func (k EtcdKeys) SubTaskStatus(worker, task string) string {
	return k.keys().subtaskStatus(worker, task)
}

// Statuses is the prefix of every status report of a worker, or of every
// worker with worker "".
func (k EtcdKeys) Statuses(worker string) string {
	if worker == "" {
		return k.keys().prefix + keyStatus
	}
	return k.keys().prefix + keyStatus + worker + "/"
}

// Coordinators is the prefix of the coordinators' election keys (the
// leader's is the one of lowest create revision).
func (k EtcdKeys) Coordinators() string { return k.keys().coordinator() }

// lastSegment returns the part of key after its last "/".
func lastSegment(key string) string { return path.Base(key) }

// validName reports whether a worker, source or task name can be a key
// segment.
func validName(s string) bool { return s != "" && !strings.Contains(s, "/") && s != "." && s != ".." }

// WorkerInfo is the value of a worker's keepalive key.
type WorkerInfo struct {
	Name string `json:"name"`
	// Addr is free text the host may set (where to reach the worker).
	Addr string `json:"addr,omitempty"`
	// Started is when the worker registered, RFC 3339.
	Started string `json:"started,omitempty"`
}

// SourceBinding is the value of a worker's bound key: the source the
// worker must serve. The epoch is the key's ModRevision, not a field.
type SourceBinding struct {
	Source string `json:"source"`
}
