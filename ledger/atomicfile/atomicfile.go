// Package atomicfile replaces a file's content so that a crash at any point
// leaves either the old content or the new one, durably: the new content is
// written to a temporary file beside the target (named "."+base+".*.tmp"),
// synced, renamed over the target, and the directory synced.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// TempSuffix ends the name of every temporary file Write creates; one left
// by a crash before its rename can be found (and removed) by it.
const TempSuffix = ".tmp"

// Option adjusts Write.
type Option func(*options)

type options struct{ overwriteReplaced bool }

// OverwriteReplaced zeroes the file being replaced once the new one is in
// place: a rename only unlinks it, leaving its bytes on disk (keys that were
// rotated away, for instance). It is held open across the rename so the
// overwrite reaches its inode.
func OverwriteReplaced() Option { return func(o *options) { o.overwriteReplaced = true } }

// Write replaces path's content with data, creating path (and its
// directory) with perm when it does not exist.
func Write(path string, data []byte, perm os.FileMode, opts ...Option) (err error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*"+TempSuffix)
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	var old *os.File
	if o.overwriteReplaced {
		if old, err = os.OpenFile(path, os.O_WRONLY, 0); err == nil {
			defer old.Close()
		} else {
			old, err = nil, nil
		}
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if err = SyncDir(dir); err != nil {
		return err
	}
	if old != nil {
		info, serr := old.Stat()
		if serr != nil {
			return nil
		}
		if _, err = old.WriteAt(make([]byte, info.Size()), 0); err != nil {
			return fmt.Errorf("overwrite the replaced %s: %w", filepath.Base(path), err)
		}
		return old.Sync()
	}
	return nil
}

// SyncDir syncs a directory, so that entries created, renamed or removed in
// it survive a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
