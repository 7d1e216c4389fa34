package devicehttp

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// FastListener wraps the download listener's TCP listener so that the
// headers of a file answer leave with the file's first segment rather
// than in a packet of their own: fasthttp writes them, then the file goes
// out with sendfile. A packet costs its sender the whole loopback or
// driver path and the receiver a wake-up; nginx saves it with TCP_CORK
// (two more system calls), this with MSG_MORE on the write of the
// headers (none). Connections that are not TCP are left as they are.
func FastListener(ln net.Listener) net.Listener { return moreListener{ln} }

type moreListener struct{ net.Listener }

func (l moreListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c, nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c, nil
	}
	return &moreConn{TCPConn: tc, raw: raw}, nil
}

// moreConn is a TCP connection whose next write may be flagged MSG_MORE.
// Its ReadFrom is the TCP connection's: sendfile.
type moreConn struct {
	*net.TCPConn
	raw syscall.RawConn
	// more flags the next Write: a body is about to follow in the same
	// goroutine (transferBody sets it).
	more bool
}

// Write sends p; flagged, with MSG_MORE, so that the kernel holds it
// until the body that follows fills a segment.
func (c *moreConn) Write(p []byte) (int, error) {
	if !c.more {
		return c.TCPConn.Write(p)
	}
	c.more = false
	var done int
	var sendErr error
	err := c.raw.Write(func(fd uintptr) bool {
		for done < len(p) {
			n, err := syscall.SendmsgN(int(fd), p[done:], nil, nil, syscall.MSG_MORE|syscall.MSG_NOSIGNAL)
			switch {
			case errors.Is(err, syscall.EAGAIN):
				return false // wait until the socket takes more
			case errors.Is(err, syscall.EINTR):
				continue
			case err != nil:
				sendErr = err
				return true
			}
			done += n
		}
		return true
	})
	if err == nil {
		err = sendErr
	}
	if err != nil {
		return done, &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	}
	return done, nil
}

// ReadFrom sends r. A range of a file the blob store keeps open (a
// *fileRange, under fasthttp's *io.LimitedReader) goes out with sendfile
// at the range's own offset: net's sendfile would send from the
// descriptor's position, which every download of the file shares.
// Anything else is the TCP connection's ReadFrom.
func (c *moreConn) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok {
		if fr, ok := lr.R.(*fileRange); ok {
			n, err := c.sendRange(fr, lr.N)
			lr.N -= n
			return n, err
		}
	}
	return c.TCPConn.ReadFrom(r)
}

// maxSendfile bounds one sendfile call, as net's does.
const maxSendfile = 1<<31 - 1

// sendRange sends up to limit bytes of fr from its offset, waiting for
// the socket under its write deadline; it stops early at the end of the
// file.
func (c *moreConn) sendRange(fr *fileRange, limit int64) (int64, error) {
	var sent int64
	var sendErr error
	src := fr.f.Fd()
	err := c.raw.Write(func(fd uintptr) bool {
		for sent < limit {
			off := fr.off
			n, err := syscall.Sendfile(int(fd), src, &off, int(min(limit-sent, maxSendfile)))
			if n > 0 {
				sent += int64(n)
				fr.off += int64(n)
			}
			switch {
			case errors.Is(err, syscall.EAGAIN):
				return false // wait until the socket takes more
			case errors.Is(err, syscall.EINTR):
				continue
			case err != nil:
				sendErr = err
				return true
			case n == 0:
				return true // the end of the file
			}
		}
		return true
	})
	if err == nil {
		err = sendErr
	}
	if err != nil {
		return sent, &net.OpError{Op: "sendfile", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	}
	return sent, nil
}
