package tcpopt

import "syscall"

// quickAck makes the kernel send the acknowledgement of what was read now,
// not after its delayed-ACK timer.
func quickAck(raw syscall.RawConn) {
	_ = raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}

// QuickAckMode reads whether c's socket acknowledges at once (1) or delays
// its acknowledgements for a reply to carry them (0).
func QuickAckMode(c syscall.Conn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var v int
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK)
	}); err != nil {
		return 0, err
	}
	return v, gerr
}
