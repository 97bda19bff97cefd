package streamer

import (
	"context"
	"fmt"
	"strings"

	"github.com/go-mysql-org/go-mysql/client"
)

// BinlogFile is one binlog file the upstream holds.
type BinlogFile struct {
	Name string
	Size uint64
}

// UpstreamState is what an upstream server says about itself and its binlog.
type UpstreamState struct {
	Flavor string
	// Identity names the server's binlog history: @@server_uuid on MySQL;
	// on MariaDB, which has no server_uuid, "<gtid_domain_id>-<server_id>"
	// (the same server keeps the same identity across restarts).
	Identity string
	// Binlogs lists SHOW BINARY LOGS, oldest first.
	Binlogs []BinlogFile
	// Master is SHOW MASTER STATUS with the GTID set the binlog holds
	// (gtid_binlog_pos on MariaDB, gtid_executed on MySQL).
	Master Position
}

// QueryUpstream connects to up and reads its identity, binlog files and
// current position. A connection that cannot be opened fails with
// ErrUnreachable, a refused login with ErrAccessDenied, a host name that
// does not resolve with ErrUnknownHost; it does not retry.
func QueryUpstream(ctx context.Context, up UpstreamConfig) (UpstreamState, error) {
	var st UpstreamState
	if err := up.Validate(); err != nil {
		return st, err
	}
	conn, err := up.connect(ctx, nil)
	if err != nil {
		kind, _ := classify(err)
		return st, &Error{Source: up.SourceName(), Op: "query upstream", Kind: kind, Err: err}
	}
	defer conn.Close()
	if err := queryState(conn, up, &st); err != nil {
		kind, _ := classify(err)
		return st, &Error{Source: up.SourceName(), Op: "query upstream", Kind: kind, Err: err}
	}
	return st, nil
}

func queryState(conn *client.Conn, up UpstreamConfig, st *UpstreamState) error {
	st.Flavor = up.Flavor
	if st.Flavor == "" {
		st.Flavor = detectFlavor(conn)
	}
	if st.Flavor == FlavorMariaDB {
		r, err := conn.Execute("SELECT @@gtid_domain_id, @@server_id, @@gtid_binlog_pos")
		if err != nil {
			return err
		}
		domain, _ := r.GetUint(0, 0)
		id, _ := r.GetUint(0, 1)
		st.Identity = fmt.Sprintf("%d-%d", domain, id)
		g, _ := r.GetString(0, 2)
		if st.Master.GTIDSet, err = NewGTIDSet(FlavorMariaDB, g); err != nil {
			return err
		}
	} else {
		r, err := conn.Execute("SELECT @@server_uuid, @@gtid_executed")
		if err != nil {
			return err
		}
		st.Identity, _ = r.GetString(0, 0)
		g, _ := r.GetString(0, 1)
		if st.Master.GTIDSet, err = NewGTIDSet(FlavorMySQL, strings.ReplaceAll(g, "\n", "")); err != nil {
			return err
		}
	}
	st.Master.Flavor = st.Flavor
	r, err := conn.Execute("SHOW MASTER STATUS")
	if err != nil {
		return err
	}
	if r.RowNumber() > 0 {
		st.Master.Name, _ = r.GetString(0, 0)
		st.Master.Offset, _ = r.GetUint(0, 1)
	}
	r, err = conn.Execute("SHOW BINARY LOGS")
	if err != nil {
		return err
	}
	for i := 0; i < r.RowNumber(); i++ {
		name, _ := r.GetString(i, 0)
		size, _ := r.GetUint(i, 1)
		st.Binlogs = append(st.Binlogs, BinlogFile{Name: name, Size: size})
	}
	return nil
}
