package lnsbridge

import "syscall"

// quickAck makes the kernel send the acknowledgement of what was read now,
// not after its delayed-ACK timer.
func quickAck(raw syscall.RawConn) {
	_ = raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
