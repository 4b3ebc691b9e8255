// Package cache owns app-connect's SQLite database: schema and forward-only
// migrations, the durable outbox every forwarded message goes through, the
// application and device tables, the join attempts of the join proxy (never
// keys), and recovery from a corrupt file.
//
// It holds no business rules: callers decide what goes where and when a row is
// delivered; cache only stores it durably and hands it back in order.
package cache
