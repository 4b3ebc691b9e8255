// Package cache owns app-connect's SQLite database: schema and forward-only
// migrations, the durable outbox every forwarded message goes through, the
// application and device tables, the join attempts of the join proxy (never
// keys), and recovery from a corrupt file.
//
// The outbox is a write-ahead log: Commit stores a group of rows in one
// transaction on a connection of the pool, with the write path's statements
// (BEGIN IMMEDIATE, COMMIT and ROLLBACK included) prepared once on each
// connection, on go-sqlite3's connection itself (writer.go): no SQL is
// parsed per commit (only the space checks' PRAGMAs, once a second). It
// hands the rows to their application's
// Feed in memory and returns a Synced that is done once the WAL is synced
// (walsync_linux.go: an fdatasync on a thread of its own, SQLite at
// synchronous=NORMAL; syncgroup.go: one sync shared by the commits of up to
// 100 ms); Append is Commit and the wait. A Feed reads the database only when cold
// (start-up, Rewind, overflow of its window). Delete and DeadLetter are lazy:
// forgotten rows are removed in bulk by an append's transaction once a second
// (sooner when deleteBatch wait or the append would meet its caps), or by one
// of their own when no append came for a second.
//
// The database's file system is watched (space.go): a bounded WAL, a space
// reserve released when a write fails for want of space, outbox caps that
// follow the file system's size, appends refused with ErrStorageFull while it
// is full (the deletions still commit), Storage() for /status, and a database
// file deleted, replaced or damaged under the running program moved to a
// fresh file with the loss counted.
//
// It holds no business rules: callers decide what goes where and when a row is
// delivered; cache only stores it durably and hands it back in order.
package cache
