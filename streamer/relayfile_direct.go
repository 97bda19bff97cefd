package streamer

import (
	"errors"
	"os"
	"syscall"
	"unsafe"
)

// Direct I/O (RelayFileWriter.DirectIO).
//
// With direct I/O on, the writer's buffer holds the current file's bytes
// from an offset aligned to dioAlign up to the file's size: whole aligned
// blocks go to the file through a second descriptor opened with O_DIRECT
// (the device reads them from the buffer: no copy into the page cache),
// and the last partial block, when a flush must put it in the file, goes
// through the ordinary descriptor and stays in the buffer, to be written
// again, whole, with the block it belongs to. The two descriptors never
// write one range at the same time, and the kernel keeps the page cache
// coherent with direct writes (it writes back and drops the cached pages
// of a range before writing it directly), so readers of the file see the
// same bytes as with buffered writes. Durability does not change: direct
// writes, like buffered ones, are durable only after an fsync (the
// device's cache and the file's size are what it then makes durable).

// dioAlign is the alignment of direct writes: their file offset, length
// and memory. 4 KiB suits the logical block size of every common device.
const dioAlign = 4096

// alignedBuffer returns a buffer of length 0 and capacity n whose first
// byte is aligned to dioAlign.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+dioAlign)
	off := 0
	if r := int(uintptr(unsafe.Pointer(&b[0])) % dioAlign); r != 0 {
		off = dioAlign - r
	}
	return b[off : off : off+n]
}

// aligned reports whether b's first byte and length suit a direct write.
func aligned(b []byte) bool {
	return len(b) > 0 && len(b)%dioAlign == 0 && uintptr(unsafe.Pointer(&b[0]))%dioAlign == 0
}

// DirectIO makes the writer write whole blocks of the files it writes with
// direct I/O (O_DIRECT, on Linux), bypassing the page cache: it saves the
// copy of every byte into the page cache, which is most of the CPU that
// buffered writing costs, and a sync then only has the device's cache and
// the file's metadata to flush. Readers see the same bytes; what they read
// comes from the device rather than the page cache. Where the file system
// refuses direct I/O the writer goes on with buffered writes. Call it
// before the first write; calling it again does nothing.
func (w *RelayFileWriter) DirectIO() error {
	if oDirect == 0 || w.direct {
		return nil
	}
	w.direct = true
	if w.f != nil {
		return w.openDirect()
	}
	return nil
}

// openDirect opens the direct descriptor of the current file and loads
// its last partial block into the buffer, so that the buffer starts at an
// aligned offset. A file system that refuses O_DIRECT leaves the writer
// with buffered writes.
func (w *RelayFileWriter) openDirect() error {
	if !w.direct || w.f == nil || w.df != nil {
		return nil
	}
	if err := w.flushBuf(); err != nil {
		return err
	}
	df, err := os.OpenFile(w.f.Name(), os.O_WRONLY|oDirect, 0)
	if err != nil {
		if errors.Is(err, syscall.EINVAL) {
			// The file system does not do direct I/O.
			w.direct = false
			return nil
		}
		return err
	}
	base := w.size - w.size%dioAlign
	if cap(w.buf) < relayDirectBuffer || !aligned(w.buf[:dioAlign]) {
		w.buf = alignedBuffer(relayDirectBuffer)
	}
	w.buf = w.buf[:w.size-base]
	if _, err := w.f.ReadAt(w.buf, base); err != nil {
		df.Close()
		w.buf = w.buf[:0]
		return err
	}
	w.df, w.clean = df, len(w.buf)
	return nil
}

// relayDirectWrite is how many bytes a direct writer gathers before a
// write: a direct write returns when the device has the bytes, so fewer,
// larger writes keep the device busier (ext4 serialises writes that extend
// a file: one is in flight at a time).
const relayDirectWrite = 4 << 20

// relayDirectBuffer is the capacity of a direct writer's buffers: a full
// relayDirectWrite plus room for the partial block carried over and an
// event that overshoots.
const relayDirectBuffer = relayDirectWrite + 256<<10

// flushAt is how many bytes the writer gathers before a write.
func (w *RelayFileWriter) flushAt() int {
	if w.df != nil {
		return relayDirectWrite
	}
	return relayWriteBuffer
}

// splitDirect splits the buffer into the whole aligned blocks it starts
// with and the partial block after them.
func (w *RelayFileWriter) splitDirect() (blocks, tail []byte) {
	n := len(w.buf) - len(w.buf)%dioAlign
	return w.buf[:n], w.buf[n:]
}

// writeDirect writes b at off through the direct descriptor df, or through
// f when b does not suit a direct write or the file system refuses it.
// A failure is a *RelayError (ErrRelayWrite) naming the file and the
// offset the write stopped at.
func writeDirect(f, df *os.File, b []byte, off int64) error {
	if df != nil && aligned(b) && off%dioAlign == 0 {
		n, err := df.WriteAt(b, off)
		if !errors.Is(err, syscall.EINVAL) {
			return writeFailed(f.Name(), off+int64(n), err)
		}
	}
	n, err := f.WriteAt(b, off)
	return writeFailed(f.Name(), off+int64(n), err)
}
