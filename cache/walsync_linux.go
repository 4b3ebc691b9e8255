package cache

/*
#cgo linux LDFLAGS: -lpthread
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

struct appconnect_walsync { int req, res; };

// The syncer thread: reads a file descriptor from req, fdatasyncs it and
// writes the result (0 or the errno) to res; a negative descriptor, or
// either pipe closed, stops it. It blocks in the kernel without holding any
// Go scheduler state.
static void *appconnect_walsync_loop(void *arg) {
	struct appconnect_walsync w = *(struct appconnect_walsync *)arg;
	free(arg);
	for (;;) {
		int32_t fd;
		ssize_t n = read(w.req, &fd, sizeof fd);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n != (ssize_t)sizeof fd || fd < 0) {
			break;
		}
		int32_t rc = 0;
		while (fdatasync(fd) != 0) {
			if (errno != EINTR) {
				rc = errno;
				break;
			}
		}
		const char *p = (const char *)&rc;
		size_t left = sizeof rc;
		while (left > 0) {
			ssize_t m = write(w.res, p, left);
			if (m < 0) {
				if (errno == EINTR) {
					continue;
				}
				goto out;
			}
			p += m;
			left -= (size_t)m;
		}
	}
out:
	close(w.req);
	close(w.res);
	return NULL;
}

static int appconnect_walsync_start(int req, int res) {
	struct appconnect_walsync *w = malloc(sizeof *w);
	if (w == NULL) {
		return ENOMEM;
	}
	w->req = req;
	w->res = res;
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&a, 64 * 1024);
	pthread_t t;
	int rc = pthread_create(&t, &a, appconnect_walsync_loop, w);
	pthread_attr_destroy(&a);
	if (rc != 0) {
		free(w);
	}
	return rc;
}
*/
import "C"

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
)

// walSyncer makes committed transactions durable by fdatasync of the WAL
// file on a thread of its own. The database runs with synchronous=NORMAL, so
// a commit does not wait in SQLite for its fsync (SQLite still syncs around
// checkpoints, which keeps the file consistent); the outbox then calls sync,
// and acknowledges nothing before it returned. The result is what
// synchronous=FULL gives: every committed row survives a power cut.
//
// Why a thread: on a single-core gateway (GOMAXPROCS=1) a goroutine blocked
// in fsync, in SQLite or in a syscall, holds the only P; the runtime's
// monitor then polls every 20 µs, takes the P away and hands it back, once
// per commit. Here the goroutine waits on a pipe in the network poller
// instead, the P is idle and the monitor sleeps.
type walSyncer struct {
	mu   sync.Mutex
	path string   // the WAL file: <database>-wal
	req  *os.File // our end of the request pipe
	res  *os.File // our end of the result pipe (non-blocking: read in the poller)
	wal  int      // open descriptor of the WAL file, -1 when none
	dev  uint64   // device and inode of wal
	ino  uint64
	n    uint64 // syncs done (tests)
}

func newWALSyncer(dbPath string) (*walSyncer, error) {
	var reqP, resP [2]int
	if err := syscall.Pipe2(reqP[:], syscall.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("cache: WAL syncer pipe: %w", err)
	}
	if err := syscall.Pipe2(resP[:], syscall.O_CLOEXEC); err != nil {
		syscall.Close(reqP[0])
		syscall.Close(reqP[1])
		return nil, fmt.Errorf("cache: WAL syncer pipe: %w", err)
	}
	// The thread's ends block; ours go through the poller.
	for _, fd := range []int{reqP[1], resP[0]} {
		if err := syscall.SetNonblock(fd, true); err != nil {
			for _, fd := range append(reqP[:], resP[:]...) {
				syscall.Close(fd)
			}
			return nil, fmt.Errorf("cache: WAL syncer pipe: %w", err)
		}
	}
	if rc := C.appconnect_walsync_start(C.int(reqP[0]), C.int(resP[1])); rc != 0 {
		for _, fd := range append(reqP[:], resP[:]...) {
			syscall.Close(fd)
		}
		return nil, fmt.Errorf("cache: WAL syncer thread: %w", syscall.Errno(rc))
	}
	return &walSyncer{
		path: dbPath + "-wal",
		req:  os.NewFile(uintptr(reqP[1]), "walsync-request"),
		res:  os.NewFile(uintptr(resP[0]), "walsync-result"),
		wal:  -1,
	}, nil
}

// sync makes everything written to the WAL file so far durable. Called after
// a commit; no WAL file means nothing to sync (the last connection closed
// and checkpointed it into the database, which SQLite synced).
func (w *walSyncer) sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.req == nil {
		return errors.New("cache: WAL syncer closed")
	}
	fd, err := w.walFD()
	if err != nil || fd < 0 {
		return err
	}
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], uint32(int32(fd)))
	if _, err := w.req.Write(b[:]); err != nil {
		return fmt.Errorf("cache: WAL sync request: %w", err)
	}
	if _, err := io.ReadFull(w.res, b[:]); err != nil {
		return fmt.Errorf("cache: WAL sync result: %w", err)
	}
	w.n++
	if rc := int32(binary.NativeEndian.Uint32(b[:])); rc != 0 {
		return fmt.Errorf("cache: fdatasync %s: %w", w.path, syscall.Errno(rc))
	}
	return nil
}

// walFD returns a descriptor of the file now at the WAL's path, reopening
// it when SQLite replaced the file (deleted at the last close, recreated at
// the next open) or the database was moved aside; -1 when there is no WAL
// file.
func (w *walSyncer) walFD() (int, error) {
	var st syscall.Stat_t
	err := syscall.Stat(w.path, &st)
	if err == nil && w.wal >= 0 && uint64(st.Dev) == w.dev && st.Ino == w.ino {
		return w.wal, nil
	}
	if w.wal >= 0 {
		syscall.Close(w.wal)
		w.wal = -1
	}
	if errors.Is(err, syscall.ENOENT) {
		return -1, nil
	}
	if err != nil {
		return -1, fmt.Errorf("cache: stat %s to sync it: %w", w.path, err)
	}
	fd, err := syscall.Open(w.path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if errors.Is(err, syscall.ENOENT) {
		return -1, nil
	}
	if err != nil {
		return -1, fmt.Errorf("cache: open %s to sync it: %w", w.path, err)
	}
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("cache: stat %s: %w", w.path, err)
	}
	w.wal, w.dev, w.ino = fd, uint64(st.Dev), st.Ino
	return fd, nil
}

// close stops the thread and releases the descriptors.
func (w *walSyncer) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.req == nil {
		return
	}
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], uint32(0xffffffff)) // -1: stop
	_, _ = w.req.Write(b[:])
	w.req.Close()
	w.res.Close()
	w.req, w.res = nil, nil
	if w.wal >= 0 {
		syscall.Close(w.wal)
		w.wal = -1
	}
}

// syncs returns how many syncs were done.
func (w *walSyncer) syncs() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}
