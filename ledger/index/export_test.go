package index

import (
	"context"
	"errors"
)

// Flush writes the memtable out to a table, so a test can put values on
// both sides of it.
func (d *DB) Flush() error {
	return errors.Join(d.dbs[mainDB].Flush(), d.dbs[idsDB].Flush())
}

// Compact merges every table into one, so a test sees values that went
// through a compaction.
func (d *DB) Compact() error {
	ctx := context.Background()
	return errors.Join(d.dbs[mainDB].Compact(ctx, []byte{0}, []byte{0xff}, false),
		d.dbs[idsDB].Compact(ctx, []byte{0}, []byte{0xff}, false))
}
