package policy

import (
	"context"
	"fmt"
	"os"
	"time"
)

// Watch polls dir at once and then every interval. Whenever the content of
// its set (as Revision measures it) differs from what it last saw — at the
// first poll too — it loads the set and calls onLoad with it. A set that
// cannot be read, does not compile or fails its tests is reported to onError,
// once per content, and the caller keeps the set it has. Reporting the set
// found at start closes the gap between the caller's initial Load and the
// watch; Engine.Activate skips a set whose revision is already active. Watch
// returns when ctx is done; the callbacks run on its goroutine.
func Watch(ctx context.Context, dir string, interval time.Duration, onLoad func(*Set), onError func(error)) {
	if interval <= 0 {
		interval = time.Second
	}
	fsys := os.DirFS(dir)
	last, lastReadErr := "", ""
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		files, err := readFiles(fsys)
		switch {
		case err != nil:
			// Report a directory that cannot be read once, not every poll.
			if msg := err.Error(); msg != lastReadErr {
				lastReadErr = msg
				onError(fmt.Errorf("%w: reading %s: %w", ErrInvalidPolicy, dir, err))
			}
		case revision(files) != last:
			lastReadErr = ""
			last = revision(files)
			s, err := Load(ctx, fsys)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				onError(err)
				break
			}
			// Load read the directory again; remember what it loaded.
			last = s.Revision()
			onLoad(s)
		default:
			lastReadErr = ""
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}
