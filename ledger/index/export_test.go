package index

import "context"

// Flush writes the memtable out to a table, so a test can put values on
// both sides of it.
func (d *DB) Flush() error { return d.db.Flush() }

// Compact merges every table into one, so a test sees values that went
// through a compaction.
func (d *DB) Compact() error {
	return d.db.Compact(context.Background(), []byte{0}, []byte{0xff}, false)
}
