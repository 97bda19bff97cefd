package streamer

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestDumpConnBatchedReadTakesAShortTail reads, with read batching on, a
// stream whose last bytes are fewer than a batch and after which the
// server sends nothing: the read must return them (after the batch wait)
// rather than wait for a batch that never comes until the read timeout;
// a read of the silent connection then stops batching and ends with the
// read timeout.
func TestDumpConnBatchedReadTakesAShortTail(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	big := bytes.Repeat([]byte("binlog!"), 1<<20) // 7 MiB
	tail := []byte("the last ten")
	gotBig := make(chan struct{})
	srvErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		if _, err := c.Write(big); err != nil {
			srvErr <- err
			return
		}
		<-gotBig
		_, err = c.Write(tail)
		srvErr <- err
		// Silent until the client hangs up.
		io.Copy(io.Discard, c)
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	d := &dumpConn{nc: nc, timeout: time.Minute, lastData: time.Now()}
	d.interrupt = d.interruptRead
	d.batchReads()
	if !canSetRcvLowat {
		if d.lowat != 0 {
			t.Fatal("batching on where the platform cannot do it")
		}
		t.Skip("read batching is Linux only")
	}
	if d.lowat == 0 {
		t.Fatal("batchReads left batching off on a TCP connection")
	}
	buf := make([]byte, 1<<20)
	var got []byte
	for len(got) < len(big) {
		n, err := d.Read(buf[:min(len(buf), len(big)-len(got))])
		if err != nil {
			t.Fatalf("after %d bytes: %v", len(got), err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, big) {
		t.Fatal("the stream came out changed")
	}
	// (Whether a read reached half a batch depends on how far the
	// receive buffer grew: turn batching on as such a read would.)
	d.setLowat(true)
	if !d.lowatOn {
		t.Fatal("the socket refused SO_RCVLOWAT")
	}
	close(gotBig)
	if err := <-srvErr; err != nil {
		t.Fatal(err)
	}
	// Fewer bytes than a batch, then silence: the read takes them once
	// the batch wait passes (a hang here ends with the minute's read
	// timeout and an error).
	var last []byte
	for len(last) < len(tail) {
		n, err := d.Read(buf)
		if err != nil {
			t.Fatalf("reading the short tail: %v", err)
		}
		last = append(last, buf[:n]...)
	}
	if !bytes.Equal(last, tail) {
		t.Fatalf("tail %q, want %q", last, tail)
	}
	// Nothing more comes: the batch wait passes, batching stops, and the
	// read ends with the connection's own read timeout.
	d.setLowat(true)
	d.timeout = 100 * time.Millisecond
	n, err := d.Read(buf)
	var ne net.Error
	if n != 0 || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("a read of a silent connection returned %d bytes and %v, want a timeout", n, err)
	}
	if d.lowatOn {
		t.Fatal("batching still on after a batch wait passed without a batch")
	}
}
