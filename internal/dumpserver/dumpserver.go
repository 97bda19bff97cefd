// Package dumpserver serves binlog files over the MySQL binlog dump
// protocol, for tests of the readers' protocol and decoding paths with
// binlogs no server here can write (MySQL 8 compressed transactions). It is
// a byte source for a protocol reader and nothing more: it answers the few
// statements a replica connection sends (SET, SHOW GLOBAL VARIABLES LIKE
// 'BINLOG_CHECKSUM', KILL) and streams the files from the position the dump
// command asks for, as MySQL does (a fake rotate, the format description,
// the events, the next file after a rotate); it replicates nothing, keeps no
// GTID state and serves no GTID dump. Correctness tests of replication use
// real MariaDB servers.
package dumpserver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/go-mysql-org/go-mysql/server"
)

// User and Password are the credentials the server takes.
const (
	User     = "repl"
	Password = "secret"
)

// File is a binlog file the server holds: its name and bytes (magic
// included). Files are served in the order given; each but the last should
// end with a rotate event naming the next.
type File struct {
	Name string
	Data []byte
}

// Server is a running dump server on 127.0.0.1.
type Server struct {
	ln    net.Listener
	files []File
	srv   *server.Server

	mu     sync.Mutex
	conns  map[uint32]net.Conn
	cuts   map[string]bool // "file:offset" after which a dump connection is cut, once
	dumps  int
	closed bool
	wg     sync.WaitGroup
}

// Start serves files until Close.
func Start(files ...File) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{ln: ln, files: files, conns: map[uint32]net.Conn{}, cuts: map[string]bool{},
		srv: server.NewServer("8.0.36-dumpserver", mysql.DEFAULT_COLLATION_ID, mysql.AUTH_NATIVE_PASSWORD, nil, nil)}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Host and Port are where the server listens.
func (s *Server) Host() string { return "127.0.0.1" }

// Port is the server's port.
func (s *Server) Port() uint16 { return uint16(s.ln.Addr().(*net.TCPAddr).Port) }

// CutAfter makes the next dump that sends the event of file ending at
// offset close its connection right after it, as a network fault would.
func (s *Server) CutAfter(file string, offset uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cuts[file+":"+strconv.FormatUint(offset, 10)] = true
}

// Dumps counts the dump commands served.
func (s *Server) Dumps() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dumps
}

// Close stops the server and waits for its goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go s.serve(nc)
	}
}

func (s *Server) serve(nc net.Conn) {
	defer s.wg.Done()
	defer nc.Close()
	h := &handler{s: s, nc: nc}
	auth := server.NewInMemoryAuthenticationHandler(mysql.AUTH_NATIVE_PASSWORD)
	if err := auth.AddUser(User, Password); err != nil {
		return
	}
	c, err := s.srv.NewCustomizedConn(nc, auth, h)
	if err != nil {
		return
	}
	h.c = c
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.conns[c.ConnectionID()] = nc
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c.ConnectionID())
		s.mu.Unlock()
	}()
	for !c.Closed() {
		if err := c.HandleCommand(); err != nil {
			return
		}
	}
}

// handler answers one connection. It is not a server.ReplicationHandler:
// the dump commands reach HandleOtherCommand, which writes the stream
// itself.
type handler struct {
	server.EmptyHandler
	s  *Server
	nc net.Conn
	c  *server.Conn
}

var errUnsupported = errors.New("dumpserver: not supported")

func (h *handler) UseDB(string) error { return nil }

func (h *handler) HandleQuery(query string) (*mysql.Result, error) {
	q := strings.ToUpper(strings.TrimSpace(query))
	switch {
	case strings.HasPrefix(q, "SET "):
		return nil, nil
	case q == "SHOW GLOBAL VARIABLES LIKE 'BINLOG_CHECKSUM'":
		rs, err := mysql.BuildSimpleTextResultset([]string{"Variable_name", "Value"}, [][]any{{"binlog_checksum", "CRC32"}})
		if err != nil {
			return nil, err
		}
		return mysql.NewResult(rs), nil
	case strings.HasPrefix(q, "KILL "):
		id, err := strconv.ParseUint(strings.TrimSpace(q[5:]), 10, 32)
		if err != nil {
			return nil, err
		}
		h.s.mu.Lock()
		if c, ok := h.s.conns[uint32(id)]; ok {
			_ = c.Close()
		}
		h.s.mu.Unlock()
		return nil, nil
	}
	return nil, fmt.Errorf("%w: %q", errUnsupported, query)
}

func (h *handler) HandleOtherCommand(cmd byte, data []byte) error {
	switch cmd {
	case mysql.COM_REGISTER_SLAVE:
		return nil
	case mysql.COM_BINLOG_DUMP:
		if len(data) < 10 {
			return mysql.ErrMalformPacket
		}
		pos := uint64(binary.LittleEndian.Uint32(data))
		return h.dump(string(data[10:]), pos)
	}
	return fmt.Errorf("%w: command %d", errUnsupported, cmd)
}

// dump streams the files from name and pos until the connection ends.
func (h *handler) dump(name string, pos uint64) error {
	first := -1
	for i, f := range h.s.files {
		if f.Name == name {
			first = i
		}
	}
	if first < 0 || pos < 4 || pos > uint64(len(h.s.files[first].Data)) {
		return mysql.NewError(mysql.ER_MASTER_FATAL_ERROR_READING_BINLOG, fmt.Sprintf("could not find %s:%d", name, pos))
	}
	h.s.mu.Lock()
	h.s.dumps++
	h.s.mu.Unlock()
	if err := h.send(fakeRotate(name, pos)); err != nil {
		return err
	}
	for i := first; i < len(h.s.files); i++ {
		f := h.s.files[i]
		off := uint64(4)
		for off < uint64(len(f.Data)) {
			size := uint64(binary.LittleEndian.Uint32(f.Data[off+9:]))
			ev := f.Data[off : off+size]
			off += size
			switch {
			case off-size == 4 && i == first && pos > 4:
				// The format description of a file read from the
				// middle: sent, marked as not part of the stream.
				ev = artificial(ev)
			case i == first && off <= pos:
				continue
			}
			if err := h.send(ev); err != nil {
				return err
			}
			h.s.mu.Lock()
			key := f.Name + ":" + strconv.FormatUint(off, 10)
			cut := h.s.cuts[key]
			delete(h.s.cuts, key)
			h.s.mu.Unlock()
			if cut {
				_ = h.nc.Close()
				return net.ErrClosed
			}
		}
	}
	// Caught up: wait for the client (or Close) to end the connection.
	var b [1]byte
	_, err := h.nc.Read(b[:])
	return err
}

// send writes one event as an OK packet.
func (h *handler) send(ev []byte) error {
	data := make([]byte, 4, 5+len(ev))
	data = append(data, mysql.OK_HEADER)
	return h.c.WritePacket(append(data, ev...))
}

// fakeRotate is the rotate a dump starts with: artificial, log_pos 0, no
// checksum.
func fakeRotate(name string, pos uint64) []byte {
	ev := make([]byte, replication.EventHeaderSize, replication.EventHeaderSize+8+len(name))
	ev[4] = byte(replication.ROTATE_EVENT)
	binary.LittleEndian.PutUint32(ev[5:], 1)
	binary.LittleEndian.PutUint32(ev[9:], uint32(replication.EventHeaderSize+8+len(name)))
	binary.LittleEndian.PutUint16(ev[17:], replication.LOG_EVENT_ARTIFICIAL_F)
	ev = binary.LittleEndian.AppendUint64(ev, pos)
	return append(ev, name...)
}

// artificial returns a copy of a format description with log_pos 0 and its
// checksum made again.
func artificial(fde []byte) []byte {
	c := append([]byte(nil), fde...)
	binary.LittleEndian.PutUint32(c[13:], 0)
	binary.LittleEndian.PutUint32(c[len(c)-4:], crc32.ChecksumIEEE(c[:len(c)-4]))
	return c
}
