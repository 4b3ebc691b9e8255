package lnsbridge

import (
	"net"
	"syscall"
	"testing"
)

// quickAckMode reads whether the socket acknowledges at once (1) or delays
// its acknowledgements for a reply to carry them (0).
func quickAckMode(t *testing.T, c net.Conn) int {
	t.Helper()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK)
	}); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// After an exchange of requests and replies the kernel delays its TCP
// acknowledgements, expecting a reply to carry them; a PUBACK that waits
// for a shared sync then holds Mosquitto's next PUBLISH back (Nagle) for up
// to 40 ms. Every read through the local connection leaves the socket
// acknowledging at once.
func TestLocalConnAcknowledgesEveryReadAtOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	for _, wrap := range []bool{false, true} {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		broker := <-accepted
		go func() {
			if c, err := ln.Accept(); err == nil {
				accepted <- c
			}
		}()
		var r net.Conn = c
		if wrap {
			r = newLocalConn(c)
		}
		buf := make([]byte, 64)
		// Replies sent right after each read put the socket in the
		// interactive (delayed acknowledgement) mode.
		for range 8 {
			if _, err := broker.Write([]byte("PUBLISH")); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Read(buf); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Write([]byte("PUBACK")); err != nil {
				t.Fatal(err)
			}
			if _, err := broker.Read(buf); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := broker.Write([]byte("PUBLISH")); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Read(buf); err != nil {
			t.Fatal(err)
		}
		got := quickAckMode(t, c)
		if wrap && got != 1 {
			t.Errorf("local connection after a read: TCP_QUICKACK %d, want 1 (acknowledge at once)", got)
		}
		if !wrap && got != 0 {
			t.Logf("a plain connection acknowledges at once here too (TCP_QUICKACK %d): this kernel never delayed", got)
		}
		c.Close()
		broker.Close()
	}
}
