//go:build !linux

package tcpopt

import (
	"errors"
	"syscall"
)

// quickAck: TCP_QUICKACK is Linux's; elsewhere the kernel's delayed ACK stays.
func quickAck(syscall.RawConn) {}

// QuickAckMode: TCP_QUICKACK is Linux's.
func QuickAckMode(syscall.Conn) (int, error) {
	return 0, errors.New("tcpopt: TCP_QUICKACK is Linux's")
}
