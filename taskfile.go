package dmworker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/dmworker/dmworker/streamer"
)

// DM task and source files
//
// ParseDMTask and ParseDMSource read the YAML files of PingCAP DM (task.yaml
// for dmctl start-task, source.yaml for dmctl operate-source) for the
// features dmworker has, so that a DM user keeps their files. Decoding is
// strict: a key DM does not know is an error naming it ("unknown field"),
// and so is a DM feature dmworker does not have ("... is a DM feature
// dmworker does not have"), rather than a task that silently does less
// than the file says.

// ErrDMFeature is wrapped by the error ParseDMTask and ParseDMSource return
// for a key of DM's file formats that names a feature dmworker does not
// have (sharding DDL coordination, dump and load units' settings, column
// mappings, ...).
var ErrDMFeature = errors.New("a DM feature dmworker does not have")

// DMTask is what a DM task file asks for: the downstream and one subtask per
// source (mysql-instances).
type DMTask struct {
	// Target is target-database: host, port, user and password.
	Target streamer.UpstreamConfig
	// SubTasks are the subtasks of mysql-instances, in the file's order,
	// each with Source set to its source-id.
	SubTasks []SubTaskConfig
}

// SubTask returns the subtask of the source named source, or, when source
// is "" and the task has one source, that one.
func (t DMTask) SubTask(source string) (SubTaskConfig, error) {
	if source == "" && len(t.SubTasks) == 1 {
		return t.SubTasks[0], nil
	}
	var ids []string
	for _, s := range t.SubTasks {
		if s.Source == source {
			return s, nil
		}
		ids = append(ids, s.Source)
	}
	if source == "" {
		return SubTaskConfig{}, fmt.Errorf("the task has sources %s: name one", strings.Join(ids, ", "))
	}
	return SubTaskConfig{}, fmt.Errorf("the task has no source %q (it has %s)", source, strings.Join(ids, ", "))
}

// The task file's keys, as DM names them (dm/config/task.go). A key in
// dmUnsupported is a DM feature dmworker does not have.
type (
	dmTaskFile struct {
		Name           string                     `json:"name"`
		TaskMode       string                     `json:"task-mode"`
		CaseSensitive  bool                       `json:"case-sensitive"`
		Target         *dmDatabase                `json:"target-database"`
		MySQLInstances []dmInstance               `json:"mysql-instances"`
		BAList         map[string]BlockAllowList  `json:"block-allow-list"`
		BWList         map[string]BlockAllowList  `json:"black-white-list"` // DM's older name
		Routes         map[string]RouteRule       `json:"routes"`
		Filters        map[string]EventFilterRule `json:"filters"`
		Syncers        map[string]dmSyncer        `json:"syncers"`
		ShardMode      ShardMode                  `json:"shard-mode"`
		// Online schema changes (OnlineDDLConfig): online-ddl (default
		// on), DM's older online-ddl-scheme ("gh-ost" or "pt": on), and
		// the table name rules.
		OnlineDDL        *bool    `json:"online-ddl"`
		OnlineDDLScheme  string   `json:"online-ddl-scheme"`
		ShadowTableRules []string `json:"shadow-table-rules"`
		TrashTableRules  []string `json:"trash-table-rules"`
	}
	dmDatabase struct {
		Host     string `json:"host"`
		Port     uint16 `json:"port"`
		User     string `json:"user"`
		Password string `json:"password"`
	}
	dmInstance struct {
		SourceID         string   `json:"source-id"`
		Meta             *dmMeta  `json:"meta"`
		BAListName       string   `json:"block-allow-list"`
		BWListName       string   `json:"black-white-list"`
		RouteRules       []string `json:"route-rules"`
		FilterRules      []string `json:"filter-rules"`
		SyncerConfigName string   `json:"syncer-config-name"`
		SyncerThread     int      `json:"syncer-thread"`
	}
	dmMeta struct {
		BinlogName string `json:"binlog-name"`
		BinlogPos  uint64 `json:"binlog-pos"`
		BinlogGTID string `json:"binlog-gtid"`
	}
	dmSyncer struct {
		WorkerCount             int   `json:"worker-count"`
		Batch                   int   `json:"batch"`
		SafeMode                bool  `json:"safe-mode"`
		Compact                 *bool `json:"compact"` // unset: the syncer's default (on)
		CheckpointFlushInterval int   `json:"checkpoint-flush-interval"`
	}
	dmSourceFile struct {
		SourceID        string      `json:"source-id"`
		From            *dmDatabase `json:"from"`
		Flavor          string      `json:"flavor"`
		ServerID        uint32      `json:"server-id"`
		EnableGTID      bool        `json:"enable-gtid"`
		EnableRelay     bool        `json:"enable-relay"`
		RelayDir        string      `json:"relay-dir"`
		RelayBinlogName string      `json:"relay-binlog-name"`
		RelayBinlogGTID string      `json:"relay-binlog-gtid"`
		Purge           *dmPurge    `json:"purge"`
	}
	dmPurge struct {
		Interval    int64  `json:"interval"`     // seconds
		Expires     int64  `json:"expires"`      // hours
		RemainSpace uint64 `json:"remain-space"` // GB
	}
)

// dmUnsupported are the keys of DM's formats, by where they appear, that
// name features dmworker does not have.
var dmUnsupported = map[string][]string{
	"task": {"is-sharding", "strict-optimistic-shard-mode", "meta-schema", "enable-heartbeat",
		"heartbeat-update-interval", "heartbeat-report-interval", "timezone", "collation_compatible",
		"ignore-checking-items", "clean-dump-file",
		"ansi-quotes", "remove-meta", "column-mappings", "expression-filter", "mydumpers", "loaders", "validators",
		"experimental", "enable-ansi-quotes"},
	"mysql-instances": {"mydumper-config-name", "mydumper", "mydumper-thread", "loader-config-name", "loader",
		"loader-thread", "syncer", "column-mapping-rules", "expression-filters", "continuous-validator-config-name",
		"continuous-validator"},
	"target-database": {"max-allowed-packet", "session", "security"},
	"syncers": {"meta-file", "queue-size", "max-retry", "auto-fix-gtid", "enable-gtid", "disable-detect",
		"multiple-rows", "enable-ansi-quotes", "safe-mode-duration", "compact-ratio"},
	"source": {"checker", "case-sensitive", "filters", "relay-binlog-format", "meta-dir"},
	"from":   {"max-allowed-packet", "session", "security"},
}

// checkDMKeys names the first key of obj (a JSON object) that is a DM
// feature dmworker does not have, at the level where (a dmUnsupported key).
func checkDMKeys(obj json.RawMessage, where string) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return nil // the strict decode says what is wrong
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if slices.Contains(dmUnsupported[where], k) {
			return fmt.Errorf("%s: %q: %w", where, k, ErrDMFeature)
		}
	}
	return nil
}

// strictJSON converts YAML to JSON and decodes it into v, refusing unknown
// keys.
func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	return nil
}

// ParseDMTask reads a DM task file (YAML). It takes name, task-mode (full,
// incremental or all), case-sensitive, target-database (host, port, user,
// password in plain text), mysql-instances (source-id, meta with
// binlog-name, binlog-pos and binlog-gtid, block-allow-list or
// black-white-list, route-rules, filter-rules, syncer-config-name,
// syncer-thread), and the named block-allow-list (black-white-list),
// routes, filters and syncers (worker-count, batch, safe-mode, compact,
// checkpoint-flush-interval in seconds) they refer to, and shard-mode
// (pessimistic or optimistic), which each subtask's ShardMode takes. A meta is the
// subtask's Start: a task with a checkpoint continues from it, as in DM.
// A binlog-gtid's flavour is read from its text (a set with ':' is MySQL's).
// An unknown key is an error naming it; a DM feature dmworker does not have
// wraps ErrDMFeature.
func ParseDMTask(data []byte) (DMTask, error) {
	fail := func(err error) (DMTask, error) { return DMTask{}, fmt.Errorf("dmworker: task file: %w", err) }
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fail(err)
	}
	var raw struct {
		Target         json.RawMessage            `json:"target-database"`
		MySQLInstances []json.RawMessage          `json:"mysql-instances"`
		Syncers        map[string]json.RawMessage `json:"syncers"`
	}
	if err := checkDMKeys(js, "task"); err != nil {
		return fail(err)
	}
	if err := json.Unmarshal(js, &raw); err == nil {
		if len(raw.Target) > 0 {
			if err := checkDMKeys(raw.Target, "target-database"); err != nil {
				return fail(err)
			}
		}
		for _, m := range raw.MySQLInstances {
			if err := checkDMKeys(m, "mysql-instances"); err != nil {
				return fail(err)
			}
		}
		for _, s := range raw.Syncers {
			if err := checkDMKeys(s, "syncers"); err != nil {
				return fail(err)
			}
		}
	}
	var f dmTaskFile
	if err := strictJSON(js, &f); err != nil {
		return fail(err)
	}
	if err := f.ShardMode.validate(); err != nil {
		return fail(fmt.Errorf("task: \"shard-mode\": %w", err))
	}
	switch {
	case f.Name == "":
		return fail(errors.New("name is required"))
	case f.Target == nil:
		return fail(errors.New("target-database is required"))
	case len(f.MySQLInstances) == 0:
		return fail(errors.New("mysql-instances is required"))
	}
	if f.TaskMode == "" {
		return fail(errors.New("task-mode is required (full, incremental or all)"))
	}
	var mode Mode
	switch f.TaskMode {
	case "all":
		mode = ModeAll
	case "full":
		mode = ModeFull
	case "incremental":
		mode = ModeIncremental
	case "dump", "load":
		return fail(fmt.Errorf("task-mode %q: %w", f.TaskMode, ErrDMFeature))
	default:
		return fail(fmt.Errorf("task-mode %q: want full, incremental or all", f.TaskMode))
	}
	t := DMTask{Target: streamer.UpstreamConfig{Host: f.Target.Host, Port: f.Target.Port, User: f.Target.User, Password: f.Target.Password}}
	if t.Target.Port == 0 {
		t.Target.Port = 3306
	}
	lists := f.BAList
	if len(f.BWList) > 0 {
		if len(lists) > 0 {
			return fail(errors.New("give block-allow-list or black-white-list, not both"))
		}
		lists = f.BWList
	}
	online := OnlineDDLConfig{OnlineDDL: f.OnlineDDL, ShadowTableRules: f.ShadowTableRules, TrashTableRules: f.TrashTableRules}
	switch f.OnlineDDLScheme {
	case "":
	case "gh-ost", "pt":
		if f.OnlineDDL != nil && !*f.OnlineDDL {
			return fail(fmt.Errorf("online-ddl is false but online-ddl-scheme is %q", f.OnlineDDLScheme))
		}
		on := true
		online.OnlineDDL = &on
	default:
		return fail(fmt.Errorf("online-ddl-scheme %q is none of gh-ost, pt", f.OnlineDDLScheme))
	}
	seen := map[string]bool{}
	for i, m := range f.MySQLInstances {
		where := fmt.Sprintf("mysql-instances[%d]", i)
		if m.SourceID == "" {
			return fail(fmt.Errorf("%s: source-id is required", where))
		}
		if seen[m.SourceID] {
			return fail(fmt.Errorf("%s: source-id %q appears twice", where, m.SourceID))
		}
		seen[m.SourceID] = true
		sc := SubTaskConfig{Name: f.Name, Source: m.SourceID, Mode: mode, ShardMode: f.ShardMode, OnlineDDLConfig: online}
		if m.Meta != nil {
			if sc.Start, err = m.Meta.position(); err != nil {
				return fail(fmt.Errorf("%s: meta: %w", where, err))
			}
		}
		listName := m.BAListName
		if m.BWListName != "" {
			if listName != "" {
				return fail(fmt.Errorf("%s: give block-allow-list or black-white-list, not both", where))
			}
			listName = m.BWListName
		}
		if listName != "" {
			l, ok := lists[listName]
			if !ok {
				return fail(fmt.Errorf("%s: block-allow-list %q is not defined", where, listName))
			}
			sc.Filter = l
		}
		sc.Filter.CaseSensitive = sc.Filter.CaseSensitive || f.CaseSensitive
		for _, name := range m.RouteRules {
			r, ok := f.Routes[name]
			if !ok {
				return fail(fmt.Errorf("%s: route rule %q is not defined in routes", where, name))
			}
			sc.Routes = append(sc.Routes, r)
		}
		for _, name := range m.FilterRules {
			r, ok := f.Filters[name]
			if !ok {
				return fail(fmt.Errorf("%s: filter rule %q is not defined in filters", where, name))
			}
			sc.EventFilters = append(sc.EventFilters, r)
		}
		if name := m.SyncerConfigName; name != "" {
			s, ok := f.Syncers[name]
			if !ok {
				return fail(fmt.Errorf("%s: syncer config %q is not defined in syncers", where, name))
			}
			if s.WorkerCount < 0 || s.Batch < 0 || s.CheckpointFlushInterval < 0 {
				return fail(fmt.Errorf("syncers %s: worker-count, batch and checkpoint-flush-interval must not be negative", name))
			}
			sc.Workers, sc.BatchSize, sc.SafeMode = s.WorkerCount, s.Batch, s.SafeMode
			if s.Compact != nil {
				// DM's compact: false (its default) is kept as written.
				sc.Compact, sc.NoCompact = *s.Compact, !*s.Compact
			}
			sc.CheckpointInterval = Duration(time.Duration(s.CheckpointFlushInterval) * time.Second)
		}
		if m.SyncerThread > 0 {
			sc.Workers = m.SyncerThread // DM: syncer-thread overrides worker-count
		}
		t.SubTasks = append(t.SubTasks, sc)
	}
	return t, nil
}

// position is the meta's start position.
func (m dmMeta) position() (streamer.Position, error) {
	var p streamer.Position
	if m.BinlogName != "" {
		p.Name, p.Offset = m.BinlogName, m.BinlogPos
		if p.Offset == 0 {
			p.Offset = 4
		}
	} else if m.BinlogPos != 0 {
		return p, errors.New("binlog-pos without binlog-name")
	}
	if g := strings.TrimSpace(m.BinlogGTID); g != "" {
		f := streamer.FlavorMariaDB
		if strings.Contains(g, ":") {
			f = streamer.FlavorMySQL
		}
		set, err := streamer.NewGTIDSet(f, g)
		if err != nil {
			return p, fmt.Errorf("binlog-gtid: %w", err)
		}
		p.Flavor, p.GTIDSet = f, set
	}
	return p, nil
}

// ParseDMSource reads a DM source file (YAML): source-id (the source's
// Name), from (host, port, user, password in plain text: DM's encrypted
// passwords are not read; leave it out and give the password another way),
// flavor, server-id, enable-relay, relay-dir, relay-binlog-name and
// relay-binlog-gtid (the relay's start), purge (interval in seconds,
// expires in hours, remain-space in GB) and enable-gtid (accepted: dmworker
// tracks GTIDs whenever the upstream logs them). An unknown key is an error
// naming it; a DM feature dmworker does not have wraps ErrDMFeature.
func ParseDMSource(data []byte) (SourceConfig, error) {
	fail := func(err error) (SourceConfig, error) {
		return SourceConfig{}, fmt.Errorf("dmworker: source file: %w", err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fail(err)
	}
	if err := checkDMKeys(js, "source"); err != nil {
		return fail(err)
	}
	var raw struct {
		From json.RawMessage `json:"from"`
	}
	if json.Unmarshal(js, &raw) == nil && len(raw.From) > 0 {
		if err := checkDMKeys(raw.From, "from"); err != nil {
			return fail(err)
		}
	}
	var f dmSourceFile
	if err := strictJSON(js, &f); err != nil {
		return fail(err)
	}
	switch {
	case f.SourceID == "":
		return fail(errors.New("source-id is required"))
	case f.From == nil:
		return fail(errors.New("from is required"))
	}
	up := streamer.UpstreamConfig{Name: f.SourceID, Host: f.From.Host, Port: f.From.Port, User: f.From.User,
		Password: f.From.Password, Flavor: f.Flavor, ServerID: f.ServerID}
	if up.Port == 0 {
		up.Port = 3306
	}
	sc := SourceConfig{Name: f.SourceID, Upstream: up, EnableRelay: f.EnableRelay, RelayDir: f.RelayDir}
	if f.RelayBinlogName != "" || f.RelayBinlogGTID != "" {
		if sc.RelayStart, err = (dmMeta{BinlogName: f.RelayBinlogName, BinlogGTID: f.RelayBinlogGTID}).position(); err != nil {
			return fail(fmt.Errorf("relay-binlog: %w", err))
		}
	}
	if p := f.Purge; p != nil {
		if p.Interval < 0 || p.Expires < 0 {
			return fail(errors.New("purge: interval and expires must not be negative"))
		}
		sc.PurgeInterval = Duration(time.Duration(p.Interval) * time.Second)
		sc.PurgeExpires = Duration(time.Duration(p.Expires) * time.Hour)
		sc.PurgeRemainSpace = p.RemainSpace << 30
	}
	if err := up.Validate(); err != nil {
		return fail(err)
	}
	return sc, nil
}
