package cache

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// OldestQueued is when the oldest row still queued for app was enqueued
// (false when none is queued), with a monotonic reading (clock.go): its age
// is time.Since of it, whatever the wall clock did meanwhile. One indexed
// lookup (application, id); used by the status report every interval, not on
// the delivery path.
func (o *Outbox) OldestQueued(ctx context.Context, app string) (time.Time, bool, error) {
	var ms int64
	err := o.db.sql.QueryRowContext(ctx, `SELECT enqueued_at FROM outbox WHERE application = CAST(? AS TEXT) ORDER BY id LIMIT 1`, app).Scan(&ms)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("cache: oldest queued row of %s: %w", app, err)
	}
	return o.stamps.load(ms), true, nil
}
