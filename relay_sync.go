package dmworker

import (
	"context"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dmworker/dmworker/streamer"
)

// relaySyncer makes a relay session's writes durable on a goroutine of its
// own, so that the session goes on receiving from the upstream while the
// disk works: group commit. The session hands its write buffer to the
// writer's write-behind goroutine (RelayFileWriter.FlushBehind: whole
// blocks, written directly) and posts the sync point with the transaction
// boundary it reached, without waiting for the disk; the syncer waits for
// those writes, writes the partial block left through the page cache (a
// direct write is not durable either until an fsync), fsyncs the file (and
// the directory after a new file), then publishes the boundary (Relayed,
// relay.meta). A post while an
// fsync runs replaces the one waiting: the next fsync covers every write
// made before it, so one fsync serves them all. A position is published
// only after an fsync that began after the position's bytes were written,
// as when the session fsynced inline.
//
// When an fsync or the meta write fails, the syncer stops, records the
// error and cancels the session's context with it as the cause; nothing
// after the last point made durable is published. stop waits for the
// goroutine: none outlives the session.
type relaySyncer struct {
	r    *Relay
	fail context.CancelCauseFunc

	mu      sync.Mutex
	moved   sync.Cond     // on mu: durable moved, or the syncer stopped
	wait    *relaySyncJob // posted, not started (the latest post)
	durable uint64        // bytes the session had written at the last point made durable
	err     error         // the first failure; the syncer has stopped
	closing bool          // stop was called: finish what is posted, then end
	ended   bool          // the goroutine returned
	wake    chan struct{} // (one slot) a job was posted or stop was called
	done    chan struct{} // closed when the goroutine ends

	fs streamer.RelayFileSyncer // goroutine only
}

// relaySyncJob is a boundary to make durable and publish.
type relaySyncJob struct {
	pt   streamer.RelaySyncPoint
	pos  streamer.RelayPos
	gset mysql.GTIDSet
	// written counts the bytes the session had written at pt.
	written uint64
}

// relayMaxAhead bounds how far the session's writes may run ahead of what
// is durable: past it, requestSync waits for the fsync under way. It keeps
// the relay's lag behind the upstream, and the page cache it dirties,
// bounded when the disk is slower than the network.
const relayMaxAhead = 128 << 20

// startSyncer starts the syncer of a session. fail is called with the
// error that stops it.
func (r *Relay) startSyncer(fail context.CancelCauseFunc) *relaySyncer {
	s := &relaySyncer{r: r, fail: fail, wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.moved.L = &s.mu
	go s.loop()
	return s
}

// post hands a boundary over to be made durable, replacing one waiting. It
// does not block on the disk. It returns the error that stopped the syncer,
// if any; the job is then dropped.
func (s *relaySyncer) post(j relaySyncJob) error {
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return err
	}
	if s.wait != nil {
		// The waiting job's directory must be synced all the same: the
		// writer handed it over once.
		if j.pt.Dir == "" {
			j.pt.Dir = s.wait.pt.Dir
		}
	}
	s.wait = &j
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// catchUp waits until no more than relayMaxAhead bytes of the written
// bytes posted are not durable yet, or the syncer stopped. The caller has
// posted a job covering written: the syncer is working towards it.
func (s *relaySyncer) catchUp(written uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.err == nil && written-s.durable > relayMaxAhead && !s.ended {
		s.moved.Wait()
	}
	return s.err
}

// stop finishes the jobs posted, ends the goroutine and returns the error
// that stopped the syncer, if any. It is safe to call more than once.
func (s *relaySyncer) stop() error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *relaySyncer) loop() {
	defer close(s.done)
	defer func() {
		s.fs.Close()
		s.mu.Lock()
		s.ended = true
		s.moved.Broadcast()
		s.mu.Unlock()
	}()
	for {
		s.mu.Lock()
		j, closing := s.wait, s.closing
		s.wait = nil
		s.mu.Unlock()
		if j == nil {
			if closing {
				return
			}
			<-s.wake
			continue
		}
		err := s.run(j)
		s.mu.Lock()
		if err != nil {
			s.err = err
		} else {
			s.durable = j.written
		}
		s.moved.Broadcast()
		s.mu.Unlock()
		if err != nil {
			s.fail(err)
			return
		}
	}
}

// run makes j's point durable and publishes its position.
func (s *relaySyncer) run(j *relaySyncJob) error {
	in := s.r.inst
	var t0 time.Time
	if in != nil {
		t0 = time.Now()
	}
	if err := s.fs.Sync(j.pt); err != nil {
		return err
	}
	if in != nil && j.pt.File != "" {
		in.fsyncs.Add(1)
		in.fsyncDur.observe(time.Since(t0))
	}
	return s.r.publish(j.pos, j.gset)
}
