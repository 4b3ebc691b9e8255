package testpeer

import (
	"io"
	"net"
	"testing"
)

// Exchange has a broker and a client trade rounds of small packets, each a
// reply to the previous one, then the broker sends one more that the client
// reads: the client's socket is then in the kernel's delayed-acknowledgement
// mode unless its reads ask for immediate acknowledgements. The client reads
// through r and writes to w.
func Exchange(t testing.TB, broker net.Conn, r io.Reader, w io.Writer, rounds int) {
	t.Helper()
	buf := make([]byte, 64)
	for range rounds {
		if _, err := broker.Write([]byte("PUBLISH")); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Read(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("PUBACK")); err != nil {
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
}

// Pair returns both ends of a loopback TCP connection, closed when the test ends.
func Pair(t testing.TB) (client, server net.Conn) {
	t.Helper()
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
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, ok := <-accepted
	if !ok {
		t.Fatal("loopback listener accepted nothing")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}
