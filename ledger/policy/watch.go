package policy

import (
	"context"
	"fmt"
	"os"
	"time"
)

// Watch polls dir every interval and, whenever the content of its set (as
// Revision measures it) changes, loads it and calls onLoad with the new set.
// A set that cannot be read, does not compile or fails its tests is reported
// to onError, once per content, and the caller keeps the set it has. The
// directory's content when Watch starts is the baseline: load it with Load
// first (a change made between that Load and the start of Watch is only seen
// with the next change). Watch returns when ctx is done; the callbacks run on
// its goroutine.
func Watch(ctx context.Context, dir string, interval time.Duration, onLoad func(*Set), onError func(error), opts ...LoadOption) {
	watch(ctx, dir, "", interval, onLoad, onError, func() {}, opts...)
}

// WatchFrom is Watch with the baseline given: the revision of the set the
// caller already runs. A change made after that set was loaded and before
// the watch began is then seen at the first poll, not missed.
func WatchFrom(ctx context.Context, dir, baseline string, interval time.Duration, onLoad func(*Set), onError func(error), opts ...LoadOption) {
	watch(ctx, dir, baseline, interval, onLoad, onError, func() {}, opts...)
}

// watch is Watch, calling baselined once it has read the baseline.
func watch(ctx context.Context, dir, baseline string, interval time.Duration, onLoad func(*Set), onError func(error), baselined func(), opts ...LoadOption) {
	if interval <= 0 {
		interval = time.Second
	}
	fsys := os.DirFS(dir)
	last := baseline
	if last == "" {
		if files, err := readFiles(fsys); err == nil {
			last = revision(files)
		}
	}
	baselined()
	lastReadErr := ""
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		files, err := readFiles(fsys)
		if err != nil {
			// Report a directory that cannot be read once, not every poll.
			if msg := err.Error(); msg != lastReadErr {
				lastReadErr = msg
				onError(fmt.Errorf("%w: reading %s: %w", ErrInvalidPolicy, dir, err))
			}
			continue
		}
		lastReadErr = ""
		rev := revision(files)
		if rev == last {
			continue
		}
		last = rev
		s, err := Load(ctx, fsys, opts...)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			onError(err)
			continue
		}
		// Load read the directory again; remember what it loaded.
		last = s.Revision()
		onLoad(s)
	}
}
