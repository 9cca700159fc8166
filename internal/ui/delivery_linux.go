package ui

import (
	"errors"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// TCP states as Linux numbers them (include/net/tcp_states.h).
const (
	tcpEstablished = 1
	tcpClose       = 7
	tcpCloseWait   = 8
)

// awaitAcked polls the socket's send queue (SIOCOUTQ: bytes not yet
// acknowledged by the peer) and its TCP state. A client that closes the
// connection with the file unread in its buffers resets it: the kernel
// then drops the queue and the state becomes CLOSE, which is not delivery.
func awaitAcked(c net.Conn, wait time.Duration) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	deadline := time.Now().Add(wait)
	pause := 500 * time.Microsecond
	for {
		var queued int
		var info *unix.TCPInfo
		var qerr, ierr error
		if err := raw.Control(func(fd uintptr) {
			queued, qerr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
			info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		}); err != nil {
			return err // the connection is closed
		}
		if qerr != nil || ierr != nil {
			return nil // not a TCP socket we can look into: nothing known to be wrong
		}
		switch info.State {
		case tcpClose:
			return errors.New("connection reset by the client")
		case tcpEstablished, tcpCloseWait:
			if queued == 0 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errUnconfirmed
		}
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}
}
