//go:build !linux

package lnsbridge

import "syscall"

// quickAck: TCP_QUICKACK is Linux's; elsewhere the kernel's delayed ACK stays.
func quickAck(syscall.RawConn) {}
