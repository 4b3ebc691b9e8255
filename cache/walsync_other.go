//go:build !linux

package cache

import "errors"

// walSyncer exists on Linux only (walsync_linux.go); elsewhere SQLite syncs
// each commit itself (synchronous=FULL).
type walSyncer struct{ ino uint64 }

func newWALSyncer(string) (*walSyncer, error) {
	return nil, errors.New("cache: no WAL syncer on this system")
}

func (*walSyncer) sync() error   { return nil }
func (*walSyncer) close()        {}
func (*walSyncer) syncs() uint64 { return 0 }
