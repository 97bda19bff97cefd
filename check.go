package dmworker

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dmworker/dmworker/internal/filter"
	"github.com/dmworker/dmworker/streamer"
)

// CheckStatus is a precheck's verdict.
type CheckStatus int

// Precheck verdicts, from best to worst.
const (
	CheckPass CheckStatus = iota // nothing to do
	CheckWarn                    // the task runs, but something may go wrong or be left out
	CheckFail                    // the task would fail or lose changes: fix it first
)

// String is the verdict as a word: "pass", "warn" or "fail".
func (s CheckStatus) String() string {
	switch s {
	case CheckPass:
		return "pass"
	case CheckWarn:
		return "warn"
	case CheckFail:
		return "fail"
	}
	return fmt.Sprintf("CheckStatus(%d)", int(s))
}

// MarshalText writes the verdict as its word.
func (s CheckStatus) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// CheckResult is one precheck's outcome: what it checks (Name), its verdict,
// what it found and, unless it passes, what to do about it.
type CheckResult struct {
	Name   string      `json:"name"`
	Status CheckStatus `json:"status"`
	Found  string      `json:"found"`
	Fix    string      `json:"fix,omitempty"`
}

// String is the result on one line: "fail binlog_format: found STATEMENT; fix: ...".
func (r CheckResult) String() string {
	s := fmt.Sprintf("%-4s %s: %s", r.Status, r.Name, r.Found)
	if r.Fix != "" {
		s += "; fix: " + r.Fix
	}
	return s
}

// CheckFailed reports whether any result is CheckFail.
func CheckFailed(rs []CheckResult) bool {
	return slices.ContainsFunc(rs, func(r CheckResult) bool { return r.Status == CheckFail })
}

// CheckOption configures Check: WithCheckDownstream, WithCheckRelayDir.
type CheckOption interface{ applyCheck(*checkOptions) }

type checkOptions struct {
	down     *sql.DB
	relayDir string
}

type checkDownstreamOption struct{ db *sql.DB }

func (o checkDownstreamOption) applyCheck(c *checkOptions) { c.down = o.db }

// WithCheckDownstream gives Check the downstream, so that it checks the
// downstream's privileges, character sets and collations and
// max_allowed_packet. Default: none, those checks are left out.
func WithCheckDownstream(db *sql.DB) CheckOption { return checkDownstreamOption{db} }

type checkRelayDirOption string

func (o checkRelayDirOption) applyCheck(c *checkOptions) { c.relayDir = string(o) }

// WithCheckRelayDir is the worker's relay base directory (WithRelayDir), so
// that Check resolves a relative SourceConfig.RelayDir. Default: none; a
// relay directory that is then not absolute is not checked.
func WithCheckRelayDir(dir string) CheckOption { return checkRelayDirOption(dir) }

// minRelayFree is the free space under which the relay directory check
// warns.
const minRelayFree = 1 << 30

// Check runs the prechecks of a task on a source, as DM's check-task does,
// and returns one result per check, in this order:
//
//   - "connect": the upstream answers and takes the login;
//   - "log_bin": the binlog is on;
//   - "binlog_format": ROW (STATEMENT or MIXED lose row changes);
//   - "binlog_row_image": FULL;
//   - "server_id": the upstream's server_id is set, and is not the one the
//     source reads as (source.Upstream.ServerID);
//   - "start position": the task's Start (a binlog file) is still on the
//     upstream; with a GTID start, the upstream has GTIDs on (MySQL:
//     gtid_mode ON) and has not purged any of what the start lacks (MySQL:
//     gtid_purged; MariaDB: the Gtid_list its oldest binlog file begins
//     with, domain by domain). The checkpoint of a task that already ran is checked by
//     the syncer itself at every start (ErrCheckpointLineage,
//     streamer.ErrBinlogPurged);
//   - "upstream privileges": REPLICATION SLAVE, REPLICATION CLIENT
//     (MariaDB: BINLOG MONITOR), SELECT, and for modes full and all RELOAD
//     (the snapshot's consistent point; without it the copy reads with one
//     connection, a warning);
//   - "filters": a block-allow list that matches no upstream table (warn);
//   - "primary keys": replicated tables without a primary or unique key
//     (warn: changes to them cannot be applied in parallel or replayed
//     idempotently);
//   - with WithCheckDownstream: "downstream privileges" (SELECT, INSERT,
//     UPDATE, DELETE, CREATE, DROP, ALTER, INDEX), "charsets" (character
//     sets and collations of replicated tables the downstream lacks),
//     "max_allowed_packet" (the downstream's against the upstream's: a row
//     event may be as large as the upstream's max_allowed_packet, so a
//     smaller downstream value may refuse a statement carrying it; this
//     approximates "the largest row event seen" without reading the
//     binlog);
//   - with relay on (source.EnableRelay): "relay directory" writable, with
//     at least 1 GiB free (warn below).
//
// When the upstream cannot be reached, the "connect" result fails and the
// checks that need it are left out. Check writes nothing upstream or
// downstream (the relay check creates and removes a file).
func Check(ctx context.Context, source SourceConfig, task SubTaskConfig, opts ...CheckOption) []CheckResult {
	var o checkOptions
	for _, opt := range opts {
		if opt != nil {
			opt.applyCheck(&o)
		}
	}
	var rs []CheckResult
	add := func(name string, st CheckStatus, found, fix string) {
		rs = append(rs, CheckResult{Name: name, Status: st, Found: found, Fix: fix})
	}
	up := source.Upstream
	db, err := openUpstreamDB(up)
	if err == nil {
		err = db.PingContext(ctx)
	}
	if err != nil {
		if db != nil {
			db.Close()
		}
		add("connect", CheckFail, fmt.Sprintf("upstream %s: %v", up.Addr(), err), "check the upstream's host, port, user and password")
		return append(rs, checkRelayDir(source, o)...)
	}
	defer db.Close()
	add("connect", CheckPass, "upstream "+up.Addr()+" answers", "")

	var logBin int
	var format, image, version string
	var serverID uint32
	if err := db.QueryRowContext(ctx, "SELECT @@GLOBAL.log_bin, @@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image, @@GLOBAL.server_id, VERSION()").
		Scan(&logBin, &format, &image, &serverID, &version); err != nil {
		add("binlog settings", CheckFail, "cannot read them: "+err.Error(), "check the user's privileges")
		return rs
	}
	mariaDB := strings.Contains(strings.ToLower(version), "mariadb")
	if logBin == 1 {
		add("log_bin", CheckPass, "the binlog is on", "")
	} else {
		add("log_bin", CheckFail, "the binlog is off", "start the upstream with log_bin (log-bin=NAME in its configuration) and restart it")
	}
	const setGlobal = " (SET GLOBAL and in the server's configuration; sessions opened before keep the old value)"
	if strings.EqualFold(format, "ROW") {
		add("binlog_format", CheckPass, "binlog_format is ROW", "")
	} else {
		add("binlog_format", CheckFail, "binlog_format is "+format+": row changes are logged as statements", "set binlog_format=ROW"+setGlobal)
	}
	if strings.EqualFold(image, "FULL") {
		add("binlog_row_image", CheckPass, "binlog_row_image is FULL", "")
	} else {
		add("binlog_row_image", CheckFail, "binlog_row_image is "+image+": row events lack columns", "set binlog_row_image=FULL"+setGlobal)
	}
	switch {
	case serverID == 0:
		add("server_id", CheckFail, "the upstream's server_id is 0", "set server_id to a value unique in the replication topology")
	case up.ServerID != 0 && up.ServerID == serverID:
		add("server_id", CheckFail, fmt.Sprintf("the source reads as server id %d, the upstream's own", up.ServerID),
			"give the source another server id (migrate -server-id), or 0 to pick a free one")
	default:
		add("server_id", CheckPass, fmt.Sprintf("the upstream's server_id is %d", serverID), "")
	}
	rs = append(rs, checkStart(ctx, db, task.Start, mariaDB)...)
	rs = append(rs, checkPreparedXA(ctx, db))
	rs = append(rs, checkUpstreamGrants(ctx, db, task.Mode, mariaDB)...)
	tables, tr := checkTables(ctx, db, task)
	rs = append(rs, tr...)
	if o.down != nil {
		rs = append(rs, checkDownstream(ctx, db, o.down, tables)...)
	}
	return append(rs, checkRelayDir(source, o)...)
}

// checkPreparedXA warns of XA transactions prepared upstream and not yet
// resolved: their rows are in the binlog at their XA PREPARE, before the
// position a task starting now begins at, so the XA COMMIT of each would
// stop it (ErrXAPreparedBeforeStart).
func checkPreparedXA(ctx context.Context, db *sql.DB) CheckResult {
	const name = "prepared XA"
	rows, err := db.QueryContext(ctx, "XA RECOVER")
	if err != nil {
		return CheckResult{Name: name, Status: CheckWarn, Found: "cannot list prepared XA transactions (XA RECOVER): " + err.Error(),
			Fix: "grant the upstream user SUPER (MariaDB) or XA_RECOVER_ADMIN (MySQL), or check by hand that none is prepared"}
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	if err := rows.Err(); err != nil {
		return CheckResult{Name: name, Status: CheckWarn, Found: "cannot list prepared XA transactions (XA RECOVER): " + err.Error(),
			Fix: "check by hand that none is prepared"}
	}
	if n > 0 {
		return CheckResult{Name: name, Status: CheckWarn,
			Found: fmt.Sprintf("%d XA transactions are prepared and not committed: their rows are in the binlog before a task that starts now, "+
				"which stops at their XA COMMIT (ErrXAPreparedBeforeStart)", n),
			Fix: "commit or roll them back (XA RECOVER lists them) before the task starts, or start it from before their XA PREPARE"}
	}
	return CheckResult{Name: name, Status: CheckPass, Found: "no XA transaction is prepared"}
}

// checkStart checks that the task's start is still on the upstream.
func checkStart(ctx context.Context, db *sql.DB, start streamer.Position, mariaDB bool) []CheckResult {
	const name = "start position"
	if start.IsZero() {
		return []CheckResult{{Name: name, Status: CheckPass, Found: "no start position: the task starts at the upstream's current end (or at its checkpoint)"}}
	}
	var out []CheckResult
	if start.Name != "" {
		files, err := binlogFiles(ctx, db)
		switch {
		case err != nil:
			out = append(out, CheckResult{name, CheckWarn, "cannot list the binlog files: " + err.Error(), "grant REPLICATION CLIENT (BINLOG MONITOR)"})
		case len(files) == 0 || start.Name < files[0]:
			first := "none"
			if len(files) > 0 {
				first = files[0]
			}
			out = append(out, CheckResult{name, CheckFail, fmt.Sprintf("the start %s is purged: the upstream's first binlog file is %s", start, first),
				"start from a position the upstream still has, or copy the data first (mode all)"})
		case start.Name > files[len(files)-1]:
			out = append(out, CheckResult{name, CheckFail, fmt.Sprintf("the start %s is past the upstream's last binlog file %s", start, files[len(files)-1]),
				"check the start position: it is not this upstream's"})
		default:
			out = append(out, CheckResult{Name: name, Status: CheckPass, Found: fmt.Sprintf("binlog file %s is on the upstream", start.Name)})
		}
	}
	if start.GTIDSet == nil {
		return out
	}
	if mariaDB {
		return append(out, checkMariaDBGTIDStart(ctx, db, start))
	}
	var mode, purged string
	if err := db.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_mode, @@GLOBAL.gtid_purged").Scan(&mode, &purged); err != nil {
		return append(out, CheckResult{"gtid", CheckFail, "cannot read gtid_mode: " + err.Error(), "a GTID start needs gtid_mode=ON upstream"})
	}
	if !strings.EqualFold(mode, "ON") {
		return append(out, CheckResult{"gtid", CheckFail, "gtid_mode is " + mode + " and the start is a GTID set", "set gtid_mode=ON (and enforce_gtid_consistency=ON), or start from a file and position"})
	}
	if p, err := streamer.NewGTIDSet(streamer.FlavorMySQL, purged); err == nil && purged != "" && !start.GTIDSet.Contain(p) {
		return append(out, CheckResult{"gtid", CheckFail, "the upstream has purged transactions the start set lacks (gtid_purged " + purged + ")",
			"start from a set that contains gtid_purged, or copy the data first (mode all)"})
	}
	return append(out, CheckResult{Name: "gtid", Status: CheckPass, Found: "gtid_mode is ON"})
}

// checkMariaDBGTIDStart checks that a MariaDB upstream still has every
// transaction after a GTID start: its oldest binlog file begins with a
// Gtid_list event, the GTID state before that file; the start must contain
// it, domain by domain, or what lies between is purged.
func checkMariaDBGTIDStart(ctx context.Context, db *sql.DB, start streamer.Position) CheckResult {
	const name = "gtid"
	files, err := binlogFiles(ctx, db)
	if err != nil || len(files) == 0 {
		return CheckResult{name, CheckWarn, fmt.Sprintf("cannot list the binlog files (%v)", err), "grant REPLICATION CLIENT (BINLOG MONITOR)"}
	}
	list, err := gtidListAt(ctx, db, files[0])
	if err != nil {
		return CheckResult{name, CheckWarn, fmt.Sprintf("cannot read the GTID list of %s: %v", files[0], err), "grant REPLICATION SLAVE (to read binlog events)"}
	}
	if !start.GTIDSet.Contain(list) {
		return CheckResult{name, CheckFail, fmt.Sprintf("the start %s is purged: the upstream's oldest binlog file %s begins after GTIDs %s, which the start set lacks",
			start.GTIDSet, files[0], list), "start from a set the upstream still has, or copy the data first (mode all)"}
	}
	return CheckResult{Name: name, Status: CheckPass, Found: fmt.Sprintf("the upstream's oldest binlog file %s begins at GTIDs %q, within the start set", files[0], list.String())}
}

// gtidListAt reads the GTID state a MariaDB binlog file begins with (its
// Gtid_list event).
func gtidListAt(ctx context.Context, db *sql.DB, file string) (mysql.GTIDSet, error) {
	rows, err := db.QueryContext(ctx, "SHOW BINLOG EVENTS IN "+quoteString(file)+" LIMIT 4")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		if len(vals) >= 6 && vals[2].String == "Gtid_list" {
			return streamer.NewGTIDSet(streamer.FlavorMariaDB, strings.Trim(vals[5].String, "[] "))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("no Gtid_list event at its start")
}

// binlogFiles lists the upstream's binlog files, oldest first.
func binlogFiles(ctx context.Context, db *sql.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx, "SHOW BINARY LOGS")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var files []string
	for rows.Next() {
		vals := make([]any, len(cols))
		var name string
		vals[0] = &name
		for i := 1; i < len(vals); i++ {
			vals[i] = new(sql.RawBytes)
		}
		if err := rows.Scan(vals...); err != nil {
			return nil, err
		}
		files = append(files, name)
	}
	return files, rows.Err()
}

// grants returns the privileges SHOW GRANTS lists for the current user on
// *.* (upper case), "ALL PRIVILEGES" included when granted.
func grants(ctx context.Context, db *sql.DB) (map[string]bool, error) {
	rows, err := db.QueryContext(ctx, "SHOW GRANTS")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	have := map[string]bool{}
	for rows.Next() {
		var g string
		if err := rows.Scan(&g); err != nil {
			return nil, err
		}
		u := strings.ToUpper(g)
		if !strings.HasPrefix(u, "GRANT ") {
			continue
		}
		privs, on, ok := strings.Cut(u[len("GRANT "):], " ON ")
		if !ok || !strings.HasPrefix(strings.TrimSpace(on), "*.*") {
			continue // schema or table grants: not what replication needs
		}
		for _, p := range strings.Split(privs, ",") {
			have[strings.TrimSpace(p)] = true
		}
	}
	return have, rows.Err()
}

// missing lists the privileges of want the grants lack.
func missing(have map[string]bool, want ...string) []string {
	if have["ALL PRIVILEGES"] {
		return nil
	}
	var out []string
	for _, w := range want {
		alts := strings.Split(w, "|") // "REPLICATION CLIENT|BINLOG MONITOR"
		if !slices.ContainsFunc(alts, func(a string) bool { return have[a] }) {
			out = append(out, alts[0])
		}
	}
	return out
}

// checkUpstreamGrants checks the upstream user's privileges.
func checkUpstreamGrants(ctx context.Context, db *sql.DB, mode Mode, mariaDB bool) []CheckResult {
	const name = "upstream privileges"
	have, err := grants(ctx, db)
	if err != nil {
		return []CheckResult{{name, CheckWarn, "cannot read the grants: " + err.Error(), "check them by hand: REPLICATION SLAVE, REPLICATION CLIENT, SELECT"}}
	}
	client := "REPLICATION CLIENT"
	if mariaDB {
		client = "REPLICATION CLIENT|BINLOG MONITOR|SUPER"
	}
	miss := missing(have, "REPLICATION SLAVE", client, "SELECT")
	if len(miss) > 0 {
		return []CheckResult{{name, CheckFail, "the upstream user lacks " + strings.Join(miss, ", "),
			"GRANT " + strings.Join(miss, ", ") + " ON *.* TO the user"}}
	}
	if mode == ModeFull || mode == ModeAll {
		if m := missing(have, "RELOAD"); len(m) > 0 {
			return []CheckResult{{name, CheckWarn, "the upstream user lacks RELOAD: the copy cannot lock for its consistent point (BACKUP STAGE, FLUSH TABLES WITH READ LOCK) and reads with one connection",
				"GRANT RELOAD ON *.* TO the user"}}
		}
	}
	return []CheckResult{{Name: name, Status: CheckPass, Found: "the upstream user has what replication needs"}}
}

// checkedTable is an upstream table the task replicates.
type checkedTable struct {
	schema, name, collation string
	hasKey                  bool
}

// checkTables lists the upstream tables the task's filter selects, and
// warns about a filter selecting none and about tables without keys.
func checkTables(ctx context.Context, db *sql.DB, task SubTaskConfig) ([]checkedTable, []CheckResult) {
	bal, err := filter.NewBlockAllowList(task.Filter.filterRules())
	if err != nil {
		return nil, []CheckResult{{"filters", CheckFail, "the block-allow list is invalid: " + err.Error(), "fix the block-allow list"}}
	}
	rows, err := db.QueryContext(ctx, `SELECT t.TABLE_SCHEMA, t.TABLE_NAME, COALESCE(t.TABLE_COLLATION, ''),
		EXISTS (SELECT 1 FROM information_schema.TABLE_CONSTRAINTS c WHERE c.TABLE_SCHEMA = t.TABLE_SCHEMA
			AND c.TABLE_NAME = t.TABLE_NAME AND c.CONSTRAINT_TYPE IN ('PRIMARY KEY', 'UNIQUE'))
		FROM information_schema.TABLES t WHERE t.TABLE_TYPE = 'BASE TABLE'`)
	if err != nil {
		return nil, []CheckResult{{"filters", CheckWarn, "cannot list the upstream's tables: " + err.Error(), "grant SELECT"}}
	}
	defer rows.Close()
	var tables []checkedTable
	for rows.Next() {
		var t checkedTable
		if err := rows.Scan(&t.schema, &t.name, &t.collation, &t.hasKey); err != nil {
			return nil, []CheckResult{{"filters", CheckWarn, "cannot list the upstream's tables: " + err.Error(), ""}}
		}
		if bal.Allowed(t.schema, t.name) {
			tables = append(tables, t)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, []CheckResult{{"filters", CheckWarn, "cannot list the upstream's tables: " + err.Error(), ""}}
	}
	var out []CheckResult
	if len(tables) == 0 {
		out = append(out, CheckResult{"filters", CheckWarn, "the block-allow list matches no upstream table (tables created later are replicated when they match)",
			"check the block-allow list's schema and table names"})
	} else {
		out = append(out, CheckResult{Name: "filters", Status: CheckPass, Found: fmt.Sprintf("%d upstream tables are replicated", len(tables))})
	}
	var nokey []string
	for _, t := range tables {
		if !t.hasKey {
			nokey = append(nokey, t.schema+"."+t.name)
		}
	}
	if len(nokey) > 0 {
		out = append(out, CheckResult{"primary keys", CheckWarn, "tables without a primary or unique key: " + strings.Join(nokey, ", "),
			"add a primary key: changes to a table without one are applied serially, and a row is found by all its values"})
	} else {
		out = append(out, CheckResult{Name: "primary keys", Status: CheckPass, Found: "every replicated table has a primary or unique key"})
	}
	return tables, out
}

// checkDownstream checks the downstream's privileges, collations and
// max_allowed_packet.
func checkDownstream(ctx context.Context, up, down *sql.DB, tables []checkedTable) []CheckResult {
	var out []CheckResult
	if have, err := grants(ctx, down); err != nil {
		out = append(out, CheckResult{"downstream privileges", CheckWarn, "cannot read the grants: " + err.Error(), ""})
	} else if miss := missing(have, "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "INDEX"); len(miss) > 0 {
		out = append(out, CheckResult{"downstream privileges", CheckFail, "the downstream user lacks " + strings.Join(miss, ", "),
			"GRANT " + strings.Join(miss, ", ") + " ON *.* TO the user"})
	} else {
		out = append(out, CheckResult{Name: "downstream privileges", Status: CheckPass, Found: "the downstream user can write the tables"})
	}

	// Collations of the replicated tables and their columns.
	used := map[string]bool{}
	for _, t := range tables {
		if t.collation != "" {
			used[t.collation] = true
		}
	}
	if len(tables) > 0 {
		rows, err := up.QueryContext(ctx, "SELECT TABLE_SCHEMA, TABLE_NAME, COLLATION_NAME FROM information_schema.COLUMNS WHERE COLLATION_NAME IS NOT NULL")
		if err == nil {
			sel := map[string]bool{}
			for _, t := range tables {
				sel[t.schema+"."+t.name] = true
			}
			for rows.Next() {
				var s, n, c string
				if rows.Scan(&s, &n, &c) == nil && sel[s+"."+n] {
					used[c] = true
				}
			}
			rows.Close()
		}
	}
	have := map[string]bool{}
	rows, err := down.QueryContext(ctx, "SELECT COLLATION_NAME FROM information_schema.COLLATIONS")
	if err != nil {
		out = append(out, CheckResult{"charsets", CheckWarn, "cannot list the downstream's collations: " + err.Error(), ""})
	} else {
		for rows.Next() {
			var c string
			if rows.Scan(&c) == nil {
				have[strings.ToLower(c)] = true
			}
		}
		rows.Close()
		var lack []string
		for c := range used {
			if !have[strings.ToLower(c)] {
				lack = append(lack, c)
			}
		}
		slices.Sort(lack)
		if len(lack) > 0 {
			out = append(out, CheckResult{"charsets", CheckFail, "the downstream lacks the collations " + strings.Join(lack, ", "),
				"use a downstream that has them, or convert the upstream tables"})
		} else {
			out = append(out, CheckResult{Name: "charsets", Status: CheckPass, Found: fmt.Sprintf("the downstream has the %d collations the tables use", len(used))})
		}
	}

	var upMax, downMax int64
	if err := up.QueryRowContext(ctx, "SELECT @@GLOBAL.max_allowed_packet").Scan(&upMax); err == nil {
		if err := down.QueryRowContext(ctx, "SELECT @@GLOBAL.max_allowed_packet").Scan(&downMax); err == nil {
			if downMax < upMax {
				out = append(out, CheckResult{"max_allowed_packet", CheckWarn,
					fmt.Sprintf("the downstream's max_allowed_packet %d is smaller than the upstream's %d: a row as large as the upstream allows cannot be applied", downMax, upMax),
					fmt.Sprintf("SET GLOBAL max_allowed_packet = %d downstream (and in its configuration)", upMax)})
			} else {
				out = append(out, CheckResult{Name: "max_allowed_packet", Status: CheckPass, Found: fmt.Sprintf("downstream %d, upstream %d", downMax, upMax)})
			}
		}
	}
	return out
}

// checkRelayDir checks that the relay directory is writable, with free
// space.
func checkRelayDir(source SourceConfig, o checkOptions) []CheckResult {
	const name = "relay directory"
	if !source.EnableRelay {
		return nil
	}
	dir := source.RelayDir
	if dir == "" {
		dir = source.Name
	}
	if !filepath.IsAbs(dir) {
		if o.relayDir == "" {
			return []CheckResult{{name, CheckWarn, "relay directory " + dir + " is relative and no base was given", "give WithCheckRelayDir"}}
		}
		dir = filepath.Join(o.relayDir, dir)
	}
	// The directory may not exist yet: check the nearest existing parent.
	d := dir
	for {
		if _, err := os.Stat(d); err == nil || !errors.Is(err, os.ErrNotExist) || filepath.Dir(d) == d {
			break
		}
		d = filepath.Dir(d)
	}
	f, err := os.CreateTemp(d, ".dmworker-check-*")
	if err != nil {
		return []CheckResult{{name, CheckFail, fmt.Sprintf("%s is not writable: %v", d, err), "give the worker a writable relay directory"}}
	}
	f.Close()
	os.Remove(f.Name())
	if free, err := freeSpace(d); err == nil {
		if free < minRelayFree {
			return []CheckResult{{name, CheckWarn, fmt.Sprintf("%s has %d MiB free", d, free>>20), "free space: the relay keeps a copy of the upstream's binlog"}}
		}
		return []CheckResult{{Name: name, Status: CheckPass, Found: fmt.Sprintf("%s is writable, %d MiB free", dir, free>>20)}}
	}
	return []CheckResult{{Name: name, Status: CheckPass, Found: dir + " is writable"}}
}

// PrecheckOption is WithoutPrecheck's option, taken by NewSyncer,
// NewSubTask and NewSourceWorker.
type PrecheckOption struct{}

// WithoutPrecheck skips the checks a Syncer (and a SubTask in mode all,
// before its copy) runs on the upstream before it starts: the binlog on,
// binlog_format ROW and binlog_row_image FULL, each refused with
// ErrBinlogFormat. They cost one connection and one query per start. The
// other prechecks are Check's, which a host runs when it chooses (migrate
// -check). Default: the checks run.
func WithoutPrecheck() PrecheckOption { return PrecheckOption{} }

func (PrecheckOption) applySyncer(s *syncerOptions)   { s.skipPrecheck = true }
func (PrecheckOption) applySubTask(t *subTaskOptions) { t.skipPrecheck = true }
func (PrecheckOption) applySourceWorker(w *sourceWorkerOptions) {
	w.subTaskOptions.skipPrecheck = true
}
