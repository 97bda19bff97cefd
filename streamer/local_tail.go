package streamer

// How a LocalReader follows the relay's tail: the read limit set by the
// live relay's durable end, the end of a file, the move to the next file
// or subdirectory, and the wait for new data.

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"time"
)

// refreshTail asks the relay for its durable end and reports whether the
// read limit in the current file moved.
func (r *LocalReader) refreshTail() bool {
	r.tailEnd, r.tailCh = r.cfg.tail.Relayed()
	old := r.limit
	r.limit = r.computeLimit()
	return r.limit != old
}

// computeLimit is how far the current file may be read: -1 when the relay's
// durable end is past the file (it is complete), 0 when it is before it.
func (r *LocalReader) computeLimit() int64 {
	if r.cfg.tail == nil {
		return -1
	}
	e := r.tailEnd
	if e.SubDir == r.sub && e.Name == r.file {
		return int64(min(e.Offset, math.MaxInt64))
	}
	if e.Compare(RelayPos{SubDir: r.sub, Name: r.file, Offset: math.MaxUint64}) > 0 {
		return -1
	}
	return 0
}

// atEnd is called when the current file has no whole event left: it moves
// to the next file when the current one is finished, and otherwise waits
// (following) or ends the stream.
func (r *LocalReader) atEnd(ctx context.Context) error {
	sub, name, finished, err := r.nextFile()
	if err != nil {
		return err
	}
	if finished {
		// Bytes may have been added before the next file appeared.
		d, err := r.peek(r.off, r.stuck+1)
		if err != nil {
			return err
		}
		if len(d) > r.stuck {
			return nil
		}
		if err := r.checkEndOfFile(); err != nil {
			return err
		}
		return r.enterFile(sub, name, 4)
	}
	if !r.cfg.follow {
		if err := r.checkStartInFile(); err != nil {
			return err
		}
		return r.newErr("read", ErrEndOfStream, nil)
	}
	return r.wait(ctx)
}

// checkEndOfFile is called at the end of a finished file.
func (r *LocalReader) checkEndOfFile() error {
	if err := r.checkStartInFile(); err != nil {
		return err
	}
	if !r.hdrDone {
		return r.corrupt(r.off, "file ends inside its header (%d bytes)", r.off+int64(r.stuck))
	}
	if r.stuck > 0 {
		return r.badEvent(r.off, "truncated: the file ends %d bytes into an event", r.stuck)
	}
	return nil
}

// checkStartInFile refuses a start offset past the end of the file.
func (r *LocalReader) checkStartInFile() error {
	if !r.midStart || !r.hdrDone || r.stuck > 0 {
		return nil
	}
	st, err := r.f.Stat()
	if err != nil {
		return r.newErr("read", nil, err)
	}
	if r.startOff > st.Size() {
		return r.newErr("open", ErrBadPosition, fmt.Errorf("offset %d is past the end of %s/%s (%d bytes)", r.startOff, r.sub, r.file, st.Size()))
	}
	return nil
}

// nextFile says whether the current file is finished, and which file comes
// next: the file a rotate named, the next file of the subdirectory, or the
// first file of the next subdirectory in the index.
func (r *LocalReader) nextFile() (sub, name string, finished bool, err error) {
	if r.cfg.tail != nil && r.limit != -1 {
		return "", "", false, nil
	}
	files, err := RelayFiles(filepath.Join(r.dir, r.sub))
	if err != nil {
		return "", "", false, r.newErr("read", nil, err)
	}
	if r.rotateTo != "" && slices.Contains(files, r.rotateTo) {
		return r.sub, r.rotateTo, true, nil
	}
	for _, f := range files {
		if compareNames(f, r.file) > 0 {
			if r.rotateTo != "" && f != r.rotateTo {
				return "", "", false, r.corrupt(r.off, "the file rotates to %s, but the next relay file is %s", r.rotateTo, f)
			}
			return r.sub, f, true, nil
		}
	}
	subs, err := ReadRelayIndex(r.dir)
	if err != nil {
		return "", "", false, r.newErr("read", nil, err)
	}
	i := slices.Index(subs, r.sub)
	if i < 0 {
		return "", "", false, r.newErr("read", ErrBinlogPurged, fmt.Errorf("relay subdirectory %s left the index", r.sub))
	}
	if i+1 < len(subs) {
		nf, err := RelayFiles(filepath.Join(r.dir, subs[i+1]))
		if err != nil {
			return "", "", false, r.newErr("read", nil, err)
		}
		if len(nf) > 0 {
			return subs[i+1], nf[0], true, nil
		}
	}
	return "", "", false, nil
}

// wait blocks until the relay may have more: the tail's channel, or the poll
// interval without a tail (or when the tail's relay has stopped and its
// channel stays closed).
func (r *LocalReader) wait(ctx context.Context) error {
	// Read what is past off afresh after the wait: a relay that restarts
	// cuts its file back and writes it again.
	if end := r.off - r.bufOff; end >= 0 && end < int64(r.bufLen) {
		r.bufLen = int(end)
	}
	if r.cfg.tail != nil {
		select {
		case <-r.tailCh:
			// Closed since we looked: the end moved, or the relay has
			// stopped and hands out closed channels. Only the latter
			// falls back to polling.
			old := r.tailEnd
			r.refreshTail()
			if r.tailEnd != old || !isClosed(r.tailCh) {
				return nil
			}
		default:
			select {
			case <-r.tailCh:
			case <-ctx.Done():
				return ctx.Err()
			case <-r.done:
				return r.closedErr()
			}
			r.refreshTail()
			return nil
		}
	}
	t := time.NewTimer(r.cfg.poll)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	case <-r.done:
		return r.closedErr()
	}
	if r.cfg.tail != nil {
		r.refreshTail()
	}
	return nil
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
