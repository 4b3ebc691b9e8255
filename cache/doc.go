// Package cache owns app-connect's SQLite database: schema and forward-only
// migrations, the durable outbox every forwarded message goes through, the
// application and device tables, the join attempts of the join proxy (never
// keys), and recovery from a corrupt file.
//
// The outbox is a write-ahead log: Append commits a group of rows in one
// transaction (statements prepared once) and hands them to their
// application's Feed in memory; a Feed reads the database only when cold
// (start-up, Rewind, overflow of its window). Delete and DeadLetter are lazy:
// forgotten rows are removed in bulk with the next transaction, or by one of
// their own when no append came for a second.
//
// It holds no business rules: callers decide what goes where and when a row is
// delivered; cache only stores it durably and hands it back in order.
package cache
